//! Topics the real Debezium 3.6.3 wrote read as tensorcdc's own: the MNIST table captured by
//! Debezium (embedded engine, producing to noida-db) in the forms Debezium users run, and by
//! `tensorcdc capture --kafka`, while rows are inserted, a label updated and a row deleted.
//! Every form gives the bounded reader the same keyed examples as tensorcdc's own topic, and
//! `train --kafka` reads the same number of examples from it:
//!
//! * the JSON converter with schemas, and without (`converter.schemas.enable=false`);
//! * after `ExtractNewRecordState` (deletes as tombstones), and with
//!   `delete.tombstone.handling.mode=rewrite` (`__deleted`);
//! * after the blog's `MnistToCsv` (ours, in Java, compiled against Connect's jars) with the
//!   String converter: label key, CSV value. That form carries no row key (the blog's
//!   records are keyed by label), so an update adds an example and a delete removes none:
//!   the test checks it holds every version of every row, as the blog's consumer sees them.
//!
//! And `run --kafka --group` learns from and predicts the rows of Debezium's topic of a table
//! of numbers.

mod common;

use std::collections::HashMap;

use std::path::Path;
use std::time::{Duration, Instant};

use tensorcdc_dataset::mnist::{self, Split};
use tensorcdc_dbzref::Debezium;
use tensorcdc_kafka::testing::Noida;
use tensorcdc_localpg::{LocalPg, Options};
use tensorcdc_source::SourceConfig;

const FASHION: &str = "/usr/share/datasets/fashion-mnist";
const ROWS: usize = 300;

/// The examples of a topic read to its end by the bounded reader (keyed by row, so an
/// update replaces its row's example and a delete removes it), as sorted (label, pixels).
async fn examples_of(brokers: &str, topic: &str) -> Vec<(i64, Vec<u8>)> {
    let cfg = SourceConfig::kafka(brokers, topic, None);
    let (ex, _report) = tensorcdc_source::bounded_examples(&cfg, Split::Train).await.unwrap_or_else(|e| panic!("{topic}: {e}"));
    let mut out: Vec<(i64, Vec<u8>)> = (0..ex.len()).map(|i| (ex.labels[i] as i64, ex.pixels[i * 784..(i + 1) * 784].to_vec())).collect();
    out.sort();
    out
}

/// Waits until `topic` holds at least `n` records.
fn wait_count(brokers: &str, topic: &str, n: i64, secs: u64, log: &dyn Fn() -> String) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let have = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .ok()
            .and_then(|m| {
                m.topics()
                    .first()
                    .map(|t| t.partitions().iter().map(|p| consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(5)).map_or(0, |w| w.1)).sum::<i64>())
            })
            .unwrap_or(0);
        if have >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{topic}: {have} of {n} records within {secs} s; log:\n{}", log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debeziums_topics_read_as_ours() {
    assert!(tensorcdc_dbzref::libs_dir().is_some(), "Debezium 3.6.3's jars are not installed: run scripts/install-deps.sh");
    let train = mnist::load(Path::new(FASHION), Split::Train).unwrap().truncate(ROWS + 20);
    let first = train.clone().truncate(ROWS);
    let pg = LocalPg::start(Options { no_fsync: true, ..Default::default() }).unwrap();
    let (c, conn) = tokio_postgres::connect(&pg.conninfo("postgres"), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    tensorcdc_postgres::load::load_examples(&c, "mnist_train", &first, 100).await.unwrap();
    let noida = Noida::start().unwrap();
    let brokers = noida.bootstrap();
    let dir = tempfile::tempdir().unwrap();

    let unwrap = [("transforms.unwrap.type", "io.debezium.transforms.ExtractNewRecordState")];
    let string =
        [("key.converter", "org.apache.kafka.connect.storage.StringConverter"), ("value.converter", "org.apache.kafka.connect.storage.StringConverter")];
    let forms: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("json", vec![]),
        ("noschema", vec![("converter.schemas.enable", "false")]),
        ("unwrap", [("transforms", "unwrap")].into_iter().chain(unwrap).collect()),
        ("rewrite", [("transforms", "unwrap"), ("transforms.unwrap.delete.tombstone.handling.mode", "rewrite")].into_iter().chain(unwrap).collect()),
        ("csv", [("transforms", "unwrap,mnist"), ("transforms.mnist.type", "MnistToCsv")].into_iter().chain(unwrap).chain(string).collect()),
    ];
    let mut engines = Vec::new();
    for (name, extra) in &forms {
        let mut props = tensorcdc_dbzref::connector_props(pg.port(), &format!("dbz{name}"), &format!("dbz_{name}"), "public.mnist_train");
        props.insert("producer.bootstrap.servers".into(), brokers.clone());
        props.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        engines.push((*name, Debezium::start(&dir.path().join(name), &props).unwrap()));
    }
    let capture = |extra: &[&str], prefix: &str| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tensorcdc"));
        cmd.args(["capture", "--postgres", &pg.url("postgres"), "--kafka", &brokers, "--table-include-list", "public.mnist_train"])
            .args(["--topic-prefix", prefix, "--slot-name", &format!("{prefix}_slot"), "--set", &format!("publication.name={prefix}_pub")])
            .args(["--set", &format!("offset.storage.file.filename={}", dir.path().join(format!("{prefix}.offsets")).display())])
            .args(extra)
            .stderr(std::process::Stdio::null());
        common::Kill(cmd.spawn().unwrap())
    };
    let _ours = capture(&[], "tf");
    let _ours_csv = capture(&["--transforms", "unwrap,mnist-csv", "--converter", "string"], "tfcsv");
    let log = |e: &Debezium| e.log_tail();
    for (name, e) in &engines {
        wait_count(&brokers, &format!("dbz{name}.public.mnist_train"), ROWS as i64, 120, &|| log(e));
    }
    wait_count(&brokers, "tf.public.mnist_train", ROWS as i64, 60, &String::new);
    wait_count(&brokers, "tfcsv.public.mnist_train", ROWS as i64, 60, &String::new);
    // Every capture has its slot now: the stream's changes reach them all.
    let more = tensorcdc_dataset::Examples::new(train.pixels[ROWS * 784..].to_vec(), train.labels[ROWS..].to_vec()).unwrap();
    tensorcdc_postgres::load::load_examples(&c, "mnist_train", &more, 20).await.unwrap();
    c.batch_execute("UPDATE mnist_train SET label = (label + 1) % 10 WHERE id = 1; DELETE FROM mnist_train WHERE id = 2").await.unwrap();
    // 20 inserts and an update; the delete adds 2 records (event and tombstone) to the
    // envelope forms, 1 to the unwrapped ones (a tombstone; with rewrite, the row with
    // `__deleted`, its tombstone dropped).
    let total = (ROWS + 21) as i64;
    for (name, e) in &engines {
        let deletes = if matches!(*name, "json" | "noschema") { 2 } else { 1 };
        wait_count(&brokers, &format!("dbz{name}.public.mnist_train"), total + deletes, 120, &|| log(e));
    }
    wait_count(&brokers, "tf.public.mnist_train", total + 2, 60, &String::new);
    wait_count(&brokers, "tfcsv.public.mnist_train", total + 1, 60, &String::new);

    let ours = examples_of(&brokers, "tf.public.mnist_train").await;
    assert_eq!(ours.len(), ROWS + 20 - 1, "our own topic: every row but the deleted one");
    let mut read = HashMap::new();
    for (name, _) in &forms {
        let topic = format!("dbz{name}.public.mnist_train");
        let theirs = examples_of(&brokers, &topic).await;
        if *name == "csv" {
            // No row keys: every version of every row.
            let ours_csv = examples_of(&brokers, "tfcsv.public.mnist_train").await;
            let mut every_version = ours.clone();
            every_version.extend(first.labels[..2].iter().enumerate().map(|(i, l)| (*l as i64, first.pixels[i * 784..(i + 1) * 784].to_vec())));
            every_version.sort();
            assert!(theirs == every_version, "{topic}: {} examples, every version of every row is {}", theirs.len(), every_version.len());
            assert!(
                ours_csv == ours,
                "our own CSV topic applies the update and the delete (its tensorcdc.key header): {} examples, {} keyed",
                ours_csv.len(),
                ours.len()
            );
        } else {
            let only_theirs = theirs.iter().filter(|x| !ours.contains(x)).count();
            let only_ours = ours.iter().filter(|x| !theirs.contains(x)).count();
            assert!(theirs == ours, "{topic}: {} examples, ours {}; {only_theirs} only there, {only_ours} only in ours", theirs.len(), ours.len());
        }
        read.insert(*name, theirs.len());
    }
    for (name, e) in &mut engines {
        e.stop().unwrap_or_else(|err| panic!("{name}: {err}"));
    }
    // The CLI reads each form as its own topic.
    for (name, _) in &forms {
        let topic = format!("dbz{name}.public.mnist_train");
        let model = dir.path().join(format!("model-{name}"));
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tensorcdc"))
            .args(["train", "--kafka", &brokers, "--topic", &topic, "--epochs", "1", "--out", model.to_str().unwrap()])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "train on {topic}: {text}");
        assert!(text.contains(&format!("training on {} examples", read[name])), "train on {topic}: {text}");
        // Evaluate, bounded and through a consumer group; live predictions of its records.
        let m = model.to_str().unwrap();
        let group = format!("eval-{name}");
        // Bounded: the table as it is (keyed); a group evaluates each version as it streams
        // by (every insert and the update, not the delete): the same counts for every form.
        for (extra, want) in [(vec![], read[name]), (vec!["--group", group.as_str(), "--stream-timeout", "3000"], ROWS + 21)] {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_tensorcdc"))
                .args(["evaluate", "--kafka", &brokers, "--topic", &topic, "--model", m])
                .args(&extra)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
            println!("evaluate {topic} {extra:?}: {}", text.lines().rev().take(2).collect::<Vec<_>>().join(" | "));
            assert!(out.status.success() && text.contains(&format!("{want} examples")), "evaluate {extra:?} on {topic}: {text}");
        }
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tensorcdc"))
            .args(["predict", "--follow", "--kafka", &brokers, "--topic", &topic, "--group", &format!("predict-{name}"), "--max", "5", "--model", m])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        println!("predict --follow {topic}: {}", text.lines().take(2).collect::<Vec<_>>().join(" | "));
        assert!(out.status.success() && text.lines().count() == 5, "predict --follow on {topic}: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
}

/// `tensorcdc run --kafka --group` on the change events Debezium 3.6.3 wrote of a table of
/// numbers (breast_cancer): the first version learns from the labelled rows, every row
/// inserted without a label gets one prediction, a deleted row loses its prediction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_learns_and_predicts_from_debeziums_topic() {
    assert!(tensorcdc_dbzref::libs_dir().is_some(), "Debezium 3.6.3's jars are not installed: run scripts/install-deps.sh");
    let dir = tempfile::tempdir().unwrap();
    let (pg, c, header, rows) = common::cancer_table(dir.path(), "int").await;
    let insert = |from: usize, to: usize, labelled: bool| common::cancer_insert(&header, &rows, from, to, labelled);
    let noida = Noida::start().unwrap();
    let brokers = noida.bootstrap();
    let mut props = tensorcdc_dbzref::connector_props(pg.port(), "dbz", "dbz_cancer", "public.cancer");
    props.insert("producer.bootstrap.servers".into(), brokers.clone());
    let mut dbz = Debezium::start(&dir.path().join("debezium"), &props).unwrap();
    // Debezium's slot exists once it streams: the labelled rows go in after it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.query_one("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'dbz_cancer' AND active", &[]).await.unwrap().get::<_, i64>(0) == 0 {
        assert!(Instant::now() < deadline, "Debezium made no slot in 60 s:\n{}", dbz.log_tail());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.batch_execute(&insert(0, 400, true)).await.unwrap();
    wait_count(&brokers, "dbz.public.cancer", 400, 60, &|| dbz.log_tail());
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tensorcdc"));
    cmd.args(["run", "--source", &pg.url("postgres"), "--table", "cancer", "--label", "target", "--layers", "16", "--initial-epochs", "20"])
        .args([
            "--retrain-every",
            "1000000",
            "--retrain-secs",
            "1e9",
            "--metrics-addr",
            "off",
            "--kafka",
            &brokers,
            "--topic",
            "dbz.public.cancer",
            "--group",
            "run-dbz",
        ])
        .arg("--out")
        .arg(dir.path().join("run"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let lines = common::Lines::of(child.stdout.take().unwrap());
    let err = common::Lines::of(child.stderr.take().unwrap());
    let _run = common::Kill(child);
    let deadline = Instant::now() + Duration::from_secs(90);
    let v1 = loop {
        if Instant::now() > deadline {
            let said: Vec<String> = std::iter::from_fn(|| err.try_next(100)).collect();
            panic!("run on Debezium's topic: no version 1 within 90 s; its stderr:\n{}", said.join("\n"));
        }
        if let Some(l) = lines.try_next(500).filter(|l| l.starts_with("version 1:")) {
            break l;
        }
    };
    assert!(v1.contains("400 examples") || v1.contains("serving"), "{v1}");
    c.batch_execute(&insert(400, 500, false)).await.unwrap();
    let count = |sql: &'static str| {
        let c = &c;
        async move { c.query_one(sql, &[]).await.map_or(0, |r| r.get::<_, i64>(0)) }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while count("SELECT count(*) FROM cancer_predictions").await < 100 {
        assert!(
            Instant::now() < deadline,
            "run predicted {} of Debezium's 100 unlabelled rows in 60 s",
            count("SELECT count(*) FROM cancer_predictions").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        count("SELECT count(*) FROM cancer WHERE target IS NULL AND id::text NOT IN (SELECT row_key FROM cancer_predictions)").await,
        0,
        "every unlabelled row predicted"
    );
    c.batch_execute("DELETE FROM cancer WHERE id = 450").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while count("SELECT count(*) FROM cancer_predictions WHERE row_key = '450'").await > 0 {
        assert!(Instant::now() < deadline, "row 450's prediction stayed after Debezium's delete event");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count("SELECT count(*) FROM cancer_predictions").await, 99, "one prediction per unlabelled row left");
    dbz.stop().unwrap();
}
