//! Any table: scikit-learn's bundled data sets (real data, written as CSV by
//! `scripts/sklearn_csv.py`) loaded into Postgres tables, trained with `train --source
//! --table T --label target`, evaluated on held-out rows, and one row predicted with
//! `predict --row`. breast_cancer is two classes, wine three, diabetes a regression.

use std::process::Command;

use tensorcdc_localpg::{LocalPg, Options};

mod common;
use common::sklearn;
use tokio_postgres::NoTls;

/// Loads rows into `<name>_train` and `<name>_test` (every fifth row), the target typed `ty`.
async fn load(c: &tokio_postgres::Client, name: &str, header: &[String], rows: &[Vec<String>], ty: &str) {
    for split in ["train", "test"] {
        let cols: Vec<String> = header.iter().map(|h| if h == "target" { format!("target {ty}") } else { format!("{h} float8") }).collect();
        c.batch_execute(&format!("CREATE TABLE {name}_{split}(id serial PRIMARY KEY, {})", cols.join(", "))).await.unwrap();
        let values: Vec<String> =
            rows.iter().enumerate().filter(|(i, _)| (i % 5 == 4) == (split == "test")).map(|(_, r)| format!("({})", r.join(","))).collect();
        c.batch_execute(&format!("INSERT INTO {name}_{split}({}) VALUES {}", header.join(","), values.join(","))).await.unwrap();
    }
}

fn run(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tensorcdc")).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{args:?}:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// The number after `key: ` in a line of output.
fn metric(out: &str, key: &str) -> f64 {
    let at = out.rfind(&format!("{key}: ")).unwrap_or_else(|| panic!("no {key} in {out}")) + key.len() + 2;
    out[at..].split(|c: char| c.is_whitespace()).next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sklearn_tables_train_evaluate_predict() {
    let pg = LocalPg::start(Options { no_fsync: true, ..Default::default() }).unwrap();
    let url = pg.url("postgres");
    let (c, conn) = tokio_postgres::connect(&pg.conninfo("postgres"), NoTls).await.unwrap();
    tokio::spawn(conn);
    let dir = tempfile::tempdir().unwrap();

    // Two classes: breast_cancer (30 numeric features).
    let (h, rows) = sklearn("breast_cancer", dir.path());
    load(&c, "bc", &h, &rows, "int").await;
    let model = dir.path().join("bc");
    let out = run(&["train", "--source", &url, "--table", "bc_train", "--label", "target", "--epochs", "30", "--out", model.to_str().unwrap()]);
    assert!(out.contains("training on 456 rows") && out.contains("30 features") && out.contains("2 classes (0, 1)"), "{out}");
    let out = run(&["evaluate", "--source", &url, "--table", "bc_test", "--model", model.to_str().unwrap()]);
    assert!(out.starts_with("113 examples"), "{out}");
    assert!(metric(&out, "accuracy") > 0.9, "{out}");
    // One raw row (the first test row) predicted from the checkpoint alone.
    let row: serde_json::Map<String, serde_json::Value> =
        h.iter().zip(&rows[4]).filter(|(k, _)| *k != "target").map(|(k, v)| (k.clone(), v.parse::<f64>().unwrap().into())).collect();
    let out = run(&["predict", "--model", model.to_str().unwrap(), "--row", &serde_json::Value::Object(row).to_string()]);
    assert!(out.starts_with(&format!("prediction: {} (", rows[4].last().unwrap())), "row 5 is class {}: {out}", rows[4].last().unwrap());

    // Live: predict --follow on a table, each new row predicted and written to a table.
    c.batch_execute("CREATE TABLE bc_live (LIKE bc_test INCLUDING ALL)").await.unwrap();
    let mut follow = Command::new(env!("CARGO_BIN_EXE_tensorcdc"))
        .args([
            "predict",
            "--follow",
            "--source",
            &url,
            "--table",
            "bc_live",
            "--max",
            "3",
            "--model",
            model.to_str().unwrap(),
            "--predictions-table",
            "bc_predictions",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    // The follower's own slot: evaluate's may linger a moment after it exits.
    while c.query_one("SELECT count(*) FROM pg_replication_slots WHERE active AND slot_name LIKE 'tensorcdc_bc_live_%'", &[]).await.unwrap().get::<_, i64>(0)
        < 1
    {
        assert!(std::time::Instant::now() < deadline, "the follower's slot within 30 s");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    c.batch_execute("INSERT INTO bc_live SELECT * FROM bc_test ORDER BY id LIMIT 3").await.unwrap();
    let out = common::Lines::of(follow.stdout.take().unwrap()).rest(60, "predictions");
    assert!(follow.wait().unwrap().success());
    let preds: Vec<serde_json::Value> = out.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let keys: Vec<&str> = preds.iter().map(|p| p["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["1", "2", "3"], "{out:?}");
    for p in &preds {
        assert!(["0", "1"].contains(&p["prediction"].as_str().unwrap()) && p["probability"].as_f64().unwrap() >= 0.5, "{p}");
        assert!(p["latency_ms"].as_f64().unwrap() < 5000.0, "{p}");
    }
    let n: i64 = c.query_one("SELECT count(*) FROM bc_predictions", &[]).await.unwrap().get(0);
    assert_eq!(n, 3);

    // Three classes: wine, with the Keras model as Keras writes it (to_json()).
    let (h, rows) = sklearn("wine", dir.path());
    load(&c, "wine", &h, &rows, "int").await;
    let keras = dir.path().join("wine.json");
    std::fs::write(&keras, r#"{"class_name": "Sequential", "config": {"name": "sequential", "layers": [
        {"class_name": "InputLayer", "config": {"batch_shape": [null, 13], "name": "input_layer"}},
        {"class_name": "Dense", "config": {"name": "dense", "units": 32, "activation": "relu", "use_bias": true, "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": null}}, "bias_initializer": {"class_name": "Zeros", "config": {}}}},
        {"class_name": "Dropout", "config": {"name": "dropout", "rate": 0.1}},
        {"class_name": "Dense", "config": {"name": "dense_1", "units": 3, "activation": "softmax", "use_bias": true, "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": null}}, "bias_initializer": {"class_name": "Zeros", "config": {}}}}]}}"#)
    .unwrap();
    let model = dir.path().join("wine");
    let out = run(&[
        "train",
        "--source",
        &url,
        "--table",
        "wine_train",
        "--label",
        "target",
        "--model-spec",
        keras.to_str().unwrap(),
        "--epochs",
        "60",
        "--out",
        model.to_str().unwrap(),
    ]);
    assert!(out.contains("3 classes (0, 1, 2)"), "{out}");
    let out = run(&["evaluate", "--source", &url, "--table", "wine_test", "--model", model.to_str().unwrap()]);
    assert!(metric(&out, "accuracy") > 0.85, "{out}");

    // The same rows as CSV records in Kafka topics (noida-db): the training topic starts
    // with its header line, the test topic has none and is read with --columns.
    let noida = tensorcdc_kafka::testing::Noida::start().unwrap();
    let brokers = noida.bootstrap();
    let producer: rdkafka::producer::BaseProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
    let send = |topic: &str, key: &str, line: &str| producer.send(rdkafka::producer::BaseRecord::to(topic).key(key).payload(line)).unwrap();
    send("wine.train", "header", &h.join(","));
    for (i, r) in rows.iter().enumerate() {
        send(if i % 5 == 4 { "wine.test" } else { "wine.train" }, &i.to_string(), &r.join(","));
    }
    rdkafka::producer::Producer::flush(&producer, std::time::Duration::from_secs(30)).unwrap();
    let model = dir.path().join("wine-csv");
    let out = run(&["train", "--kafka", &brokers, "--topic", "wine.train", "--label", "target", "--epochs", "60", "--out", model.to_str().unwrap()]);
    assert!(out.contains("training on 143 rows") && out.contains("13 features") && out.contains("3 classes"), "{out}");
    let out = run(&["evaluate", "--kafka", &brokers, "--topic", "wine.test", "--columns", &h.join(","), "--model", model.to_str().unwrap()]);
    assert!(out.starts_with("35 examples") && metric(&out, "accuracy") > 0.85, "{out}");

    // Regression: diabetes (a float8 target); better than always predicting the mean.
    let (h, rows) = sklearn("diabetes", dir.path());
    load(&c, "diab", &h, &rows, "float8").await;
    let model = dir.path().join("diab");
    // The optimizer from Keras' model.get_compile_config(): RMSprop with momentum.
    let compile = dir.path().join("compile.json");
    std::fs::write(&compile, r#"{"optimizer": {"module": "keras.optimizers", "class_name": "RMSprop", "config": {"name": "rmsprop", "learning_rate": 0.01, "rho": 0.9, "momentum": 0.5, "epsilon": 1e-07, "centered": false}}, "loss": "mean_squared_error", "metrics": ["mae"]}"#).unwrap();
    let out = run(&[
        "train",
        "--source",
        &url,
        "--table",
        "diab_train",
        "--label",
        "target",
        "--epochs",
        "100",
        "--compile-config",
        compile.to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
    ]);
    assert!(out.contains("regression"), "{out}");
    let out = run(&["evaluate", "--source", &url, "--table", "diab_test", "--model", model.to_str().unwrap()]);
    let y: Vec<f64> = rows.iter().enumerate().filter(|(i, _)| i % 5 == 4).map(|(_, r)| r.last().unwrap().parse().unwrap()).collect();
    let mean = y.iter().sum::<f64>() / y.len() as f64;
    let variance = y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / y.len() as f64;
    let mse = metric(&out, "mse");
    assert!(mse < 0.8 * variance, "test MSE {mse} vs the target's variance {variance}: {out}");
}
