//! Bring your own model (issue 23). A Keras user's own saved models served by tensorcdc: Keras 3.15 (the tests' venv) trains
//! the blog's MLP, a CNN and a network of the other supported layers on Fashion-MNIST and
//! saves them (`scripts/keras_reference.py`, which also writes Keras' own accuracy, loss and
//! probabilities). `tensorcdc evaluate --model X.keras` on the 10,000 test rows in Postgres
//! gives Keras' accuracy to four decimals, and `predict --follow` on inserted rows gives
//! Keras' class for every row with its probability within 1e-5. Files that do not match
//! their config are refused with an error naming the variable or the layer. The same models
//! exported to ONNX by Keras (tf2onnx) are served through tract with onnxruntime's accuracy
//! and probabilities; a scikit-learn pipeline of ONNX-ML operators tract lacks is refused
//! with their names. tensorcdc's own checkpoints exported to `.keras` are run by Keras.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{fails, ok};
use tensorcdc_localpg::{LocalPg, Options};

const FASHION: &str = "/usr/share/datasets/fashion-mnist";
const PYTHON: &str = "/var/tmp/tensorcdc-tools/pyvenv/bin/python";
/// TensorFlow, Keras, tf2onnx, onnxruntime and skl2onnx at versions that agree (install-deps.sh).
const ONNX_PYTHON: &str = "/var/tmp/tensorcdc-tools/onnxvenv/bin/python";

/// The number after `key: ` in a line of output.
fn metric(out: &str, key: &str) -> f64 {
    let at = out.rfind(&format!("{key}: ")).unwrap_or_else(|| panic!("no {key} in {out}")) + key.len() + 2;
    out[at..].split(|c: char| c.is_whitespace()).next().unwrap().parse().unwrap()
}

/// Rows followed and compared with Keras (the reference writes probabilities of the first 64).
const PROBS: usize = 64;

/// `predict --follow --model MODEL` on a new table into which the first `rows` test rows are
/// inserted once its slot is active; its (key, class, probability) lines.
fn follow(pg: &LocalPg, model: &Path, table: &str, rows: usize) -> Vec<(usize, String, f64)> {
    let url = pg.url("postgres");
    pg.psql("postgres", &["-c", &format!("CREATE TABLE {table} (LIKE mnist_test INCLUDING ALL)")]).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tensorcdc"))
        .args(["predict", "--follow", "--source", &url, "--table", table, "--max", &rows.to_string(), "--model", model.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let active = pg
            .psql("postgres", &["-At", "-c", &format!("SELECT count(*) FROM pg_replication_slots WHERE active AND slot_name LIKE 'tensorcdc_{table}_%'")])
            .unwrap();
        if active.trim() == "1" {
            break;
        }
        assert!(Instant::now() < deadline, "{table}: the follower's slot within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    pg.psql("postgres", &["-c", &format!("INSERT INTO {table} SELECT * FROM mnist_test ORDER BY id LIMIT {rows}")]).unwrap();
    let lines = common::Lines::of(child.stdout.take().unwrap()).rest(60, "predictions");
    assert!(child.wait().unwrap().success());
    assert_eq!(lines.len(), rows, "{table}: {lines:?}");
    lines
        .iter()
        .map(|l| {
            let p: serde_json::Value = serde_json::from_str(l).unwrap();
            // Every model's prediction is the class as its spec names it (images: "0".."9").
            let class = p["prediction"].as_str().unwrap().to_string();
            (p["key"].as_str().unwrap().parse().unwrap(), class, p["probability"].as_f64().unwrap())
        })
        .collect()
}

/// Each prediction is Keras' class for its row; returns the largest difference from Keras'
/// probability of that class.
fn same_as_keras(name: &str, preds: &[(usize, String, f64)], probs: &serde_json::Value) -> f64 {
    let mut worst = 0f64;
    for (id, class, prob) in preds {
        let want: Vec<f64> = probs[id - 1].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let best = (0..want.len()).max_by(|&a, &b| want[a].total_cmp(&want[b])).unwrap();
        assert_eq!(*class, best.to_string(), "{name}: row {id}: tensorcdc {class} ({prob}), Keras {want:?}");
        worst = worst.max((prob - want[best]).abs());
    }
    assert!(worst < 1e-5, "{name}: the largest difference from Keras' probability is {worst}");
    worst
}

/// Runs the reference script into `dir`; returns its report.
fn keras_reference(dir: &Path) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/keras_reference.py");
    let out =
        Command::new(PYTHON).args([script, FASHION, dir.to_str().unwrap()]).output().expect("run the Keras reference (scripts/install-deps.sh makes its venv)");
    assert!(out.status.success(), "keras_reference.py: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&std::fs::read(dir.join("keras.json")).unwrap()).unwrap()
}

#[test]
fn keras_files_evaluate_and_follow_as_keras_predicts() {
    let dir = tempfile::tempdir().unwrap();
    let keras = keras_reference(dir.path());
    let pg = LocalPg::start(Options { no_fsync: true, ..Default::default() }).unwrap();
    let url = pg.url("postgres");
    let out = ok(&["mnist", "load", "--data", FASHION, "--postgres", &url, "--split", "test"]);
    assert!(out.contains("mnist_test: 10000 rows"), "{out}");

    // evaluate: Keras' accuracy on the 10,000 test images, to four decimals.
    for name in ["mlp", "cnn", "layers", "mlp_json"] {
        let file = if name == "mlp_json" { dir.path().join("mlp_json.weights.h5") } else { dir.path().join(format!("{name}.keras")) };
        let out = ok(&["evaluate", "--source", &url, "--table", "mnist_test", "--model", file.to_str().unwrap()]);
        assert!(out.starts_with("10000 examples"), "{name}: {out}");
        let (acc, want) = (metric(&out, "accuracy"), keras[name]["accuracy"].as_f64().unwrap());
        assert_eq!(format!("{acc:.4}"), format!("{want:.4}"), "{name}: tensorcdc {out} Keras {want}");
        let (loss, want) = (metric(&out, "loss"), keras[name]["loss"].as_f64().unwrap());
        assert!((loss - want).abs() < 1e-3, "{name}: loss {loss}, Keras {want}");
        // The same 10,000 images from the IDX files.
        let out = ok(&["evaluate", "--data", FASHION, "--model", file.to_str().unwrap()]);
        assert_eq!(format!("{:.4}", metric(&out, "accuracy")), format!("{:.4}", keras[name]["accuracy"].as_f64().unwrap()), "{name} --data: {out}");
    }

    // predict --follow: each inserted row gets Keras' class and probability.
    for name in ["cnn", "layers"] {
        let preds = follow(&pg, &dir.path().join(format!("{name}.keras")), &format!("live_{name}"), PROBS);
        let worst = same_as_keras(name, &preds, &keras[name]["probs"]);
        println!("{name}: {PROBS} rows followed, Keras' class for each, probabilities within {worst:.1e}");
    }

    // Files that do not match their config: the error names the variable, or the layer.
    let json = std::fs::read_to_string(dir.path().join("mlp_json.json")).unwrap();
    std::fs::write(dir.path().join("narrow.json"), json.replacen("\"units\": 128", "\"units\": 64", 1)).unwrap();
    std::fs::copy(dir.path().join("mlp_json.weights.h5"), dir.path().join("narrow.weights.h5")).unwrap();
    let e = fails(&["evaluate", "--source", &url, "--table", "mnist_test", "--model", dir.path().join("narrow.weights.h5").to_str().unwrap()]);
    assert!(e.contains("layers/dense/vars/0") && e.contains("[784, 128]") && e.contains("[784, 64]"), "{e}");
    std::fs::write(dir.path().join("lstm.json"), json.replacen("\"Dense\"", "\"LSTM\"", 1)).unwrap();
    std::fs::copy(dir.path().join("mlp_json.weights.h5"), dir.path().join("lstm.weights.h5")).unwrap();
    let e = fails(&["evaluate", "--source", &url, "--table", "mnist_test", "--model", dir.path().join("lstm.weights.h5").to_str().unwrap()]);
    assert!(e.contains("LSTM") && e.contains("not supported"), "{e}");
}

/// `tensorcdc export` (`.keras` and ONNX) of checkpoints tensorcdc trained (the blog's MLP of `train --data`, a CNN
/// and the network of the other layers trained with `--model-spec` from Keras' to_json()):
/// Keras' `load_model` of the file predicts the 10,000 test rows with the checkpoint's own
/// accuracy (to four decimals) and loss, and the first 64 rows with the classes and
/// probabilities (within 1e-5) that `predict --follow` gives with the checkpoint; onnxruntime
/// does the same with the ONNX export.
#[test]
fn exports_to_keras_and_onnx_predict_as_tensorcdc() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    keras_reference(dir.path());
    let pg = LocalPg::start(Options { no_fsync: true, ..Default::default() }).unwrap();
    let url = pg.url("postgres");
    ok(&["mnist", "load", "--data", FASHION, "--postgres", &url, "--split", "train", "--limit", "6000"]);
    ok(&["mnist", "load", "--data", FASHION, "--postgres", &url, "--split", "test"]);
    ok(&["train", "--data", FASHION, "--limit", "6000", "--epochs", "1", "--out", &d("mlp_tc")]);
    for name in ["cnn", "layers"] {
        let out = ok(&[
            "train",
            "--source",
            &url,
            "--table",
            "mnist_train",
            "--label",
            "label",
            "--model-spec",
            &d(&format!("{name}.json")),
            "--epochs",
            "1",
            "--out",
            &d(&format!("{name}_tc")),
        ]);
        assert!(out.contains("training on 6000 rows"), "{out}");
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/keras_check.py");
    for name in ["mlp", "cnn", "layers"] {
        let (model, file) = (d(&format!("{name}_tc")), d(&format!("{name}_tc.keras")));
        let out = ok(&["export", "--model", &model, "--out", &file]);
        assert!(out.starts_with(&format!("wrote {file} (keras)")), "{out}");
        let out = Command::new(PYTHON).args([script, &file, FASHION, &d(&format!("{name}_check.json"))]).output().unwrap();
        assert!(out.status.success(), "Keras load_model of {file}: {}", String::from_utf8_lossy(&out.stderr));
        let k: serde_json::Value = serde_json::from_slice(&std::fs::read(d(&format!("{name}_check.json"))).unwrap()).unwrap();
        let ours = ok(&["evaluate", "--source", &url, "--table", "mnist_test", "--model", &model]);
        let (acc, want) = (metric(&ours, "accuracy"), k["accuracy"].as_f64().unwrap());
        assert_eq!(format!("{acc:.4}"), format!("{want:.4}"), "{name}: tensorcdc {ours}, Keras on the export {k}");
        assert!((metric(&ours, "loss") - k["loss"].as_f64().unwrap()).abs() < 1e-3, "{name}: {ours} against Keras' {}", k["loss"]);
        let preds = follow(&pg, Path::new(&model), &format!("export_{name}"), PROBS);
        let worst = same_as_keras(name, &preds, &k["probs"]);
        println!("{name}: Keras' load_model of the export: accuracy {want:.4} as tensorcdc's, probabilities within {worst:.1e}; layers {}", k["layers"]);
        // ONNX out: onnxruntime gives the same accuracy and probabilities.
        let onnx = d(&format!("{name}_tc.onnx"));
        let out = ok(&["export", "--model", &model, "--format", "onnx", "--out", &onnx]);
        assert!(out.starts_with(&format!("wrote {onnx} (onnx)")), "{out}");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/onnx_check.py");
        let out = Command::new(ONNX_PYTHON).args([script, &onnx, FASHION, &d(&format!("{name}_ort.json"))]).output().unwrap();
        assert!(out.status.success(), "onnxruntime on {onnx}: {}", String::from_utf8_lossy(&out.stderr));
        let o: serde_json::Value = serde_json::from_slice(&std::fs::read(d(&format!("{name}_ort.json"))).unwrap()).unwrap();
        assert_eq!(format!("{acc:.4}"), format!("{:.4}", o["accuracy"].as_f64().unwrap()), "{name}: tensorcdc {ours}, onnxruntime on the export {o}");
        assert!((metric(&ours, "loss") - o["loss"].as_f64().unwrap()).abs() < 1e-3, "{name}: {ours} against onnxruntime's {}", o["loss"]);
        let worst = same_as_keras(name, &preds, &o["probs"]);
        println!("{name}: onnxruntime on the ONNX export: accuracy as tensorcdc's, probabilities within {worst:.1e}");
    }
}

/// ONNX in: Keras' own ONNX export (tf2onnx) of the three Keras models, served through tract:
/// `evaluate` on the 10,000 test rows gives onnxruntime's accuracy to four decimals and its
/// loss within 1e-3, `predict --follow` onnxruntime's class for every followed row and its
/// probability within 1e-5. A scikit-learn pipeline exported by skl2onnx (one input per
/// column, ONNX-ML's Scaler, OneHotEncoder and LinearClassifier) needs its feature spec, and
/// says so; with it, `evaluate` on a table gives onnxruntime's accuracy and `predict --row`
/// onnxruntime's class for every row (one of a city never seen in training).
#[test]
fn onnx_files_evaluate_and_follow_as_onnxruntime_predicts() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    keras_reference(dir.path());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/onnx_reference.py");
    let out = Command::new(ONNX_PYTHON)
        .args([script, FASHION, &d(""), "mlp", "cnn", "layers"])
        .output()
        .expect("run the ONNX reference (scripts/install-deps.sh makes its venv)");
    assert!(out.status.success(), "onnx_reference.py: {}", String::from_utf8_lossy(&out.stderr));
    let ort: serde_json::Value = serde_json::from_slice(&std::fs::read(d("onnx.json")).unwrap()).unwrap();
    let pg = LocalPg::start(Options { no_fsync: true, ..Default::default() }).unwrap();
    let url = pg.url("postgres");
    ok(&["mnist", "load", "--data", FASHION, "--postgres", &url, "--split", "test"]);
    for name in ["mlp", "cnn", "layers"] {
        let out = ok(&["evaluate", "--source", &url, "--table", "mnist_test", "--model", &d(&format!("{name}.onnx"))]);
        assert!(out.starts_with("10000 examples"), "{name}: {out}");
        let (acc, want) = (metric(&out, "accuracy"), ort[name]["accuracy"].as_f64().unwrap());
        assert_eq!(format!("{acc:.4}"), format!("{want:.4}"), "{name}: tensorcdc {out} onnxruntime {want}");
        assert!((metric(&out, "loss") - ort[name]["loss"].as_f64().unwrap()).abs() < 1e-3, "{name}: {out} against onnxruntime's {}", ort[name]["loss"]);
    }
    for name in ["cnn", "layers"] {
        let preds = follow(&pg, Path::new(&d(&format!("{name}.onnx"))), &format!("onnx_{name}"), PROBS);
        let worst = same_as_keras(name, &preds, &ort[name]["probs"]);
        println!("{name}.onnx: {PROBS} rows followed, onnxruntime's class for each, probabilities within {worst:.1e}");
    }

    // The scikit-learn pipeline: one input per column, ONNX-ML's Scaler and OneHotEncoder.
    let ops: Vec<&str> = ort["pipeline_ops"].as_array().unwrap().iter().map(|o| o.as_str().unwrap()).collect();
    assert!(ops.contains(&"Scaler") && ops.contains(&"OneHotEncoder") && ops.contains(&"LinearClassifier"), "{ops:?}");
    let pipeline = d("pipeline.onnx");
    let e = fails(&["predict", "--model", &pipeline, "--row", r#"{"amount": 0.5, "city": "Lyon"}"#]);
    assert!(e.contains("one input per column (amount, city)") && e.contains("pipeline.onnx.features.json"), "{e}");
    // Its feature spec: the columns by name (the city's vocabulary is the encoder's), the label.
    let p = &ort["pipeline"];
    let cats: Vec<String> = p["categories"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
    let spec = serde_json::json!({
        "columns": [
            {"name": "amount", "kind": "number", "width": 1, "shift": 0.0, "scale": 1.0, "vocab": [], "impute": [0.0]},
            {"name": "city", "kind": "category", "width": cats.len() + 1, "vocab": cats, "impute": vec![0.0; cats.len() + 1]}
        ],
        "label": "target", "task": "classification", "classes": ["0", "1"], "scaling": "none", "nulls": "skip"
    });
    std::fs::write(format!("{pipeline}.features.json"), spec.to_string()).unwrap();
    let rows = p["rows"].as_array().unwrap();
    let values: Vec<String> =
        rows.iter().enumerate().map(|(i, r)| format!("({}, {}, '{}', {})", i + 1, r["amount"], r["city"].as_str().unwrap(), r["target"])).collect();
    pg.psql("postgres", &["-c", "CREATE TABLE pipe (id int PRIMARY KEY, amount real, city text, target int)"]).unwrap();
    pg.psql("postgres", &["-c", &format!("INSERT INTO pipe VALUES {}", values.join(", "))]).unwrap();
    let out = ok(&["evaluate", "--source", &url, "--table", "pipe", "--model", &pipeline]);
    assert!(out.starts_with(&format!("{} examples", rows.len())), "{out}");
    assert_eq!(format!("{:.4}", metric(&out, "accuracy")), format!("{:.4}", p["accuracy"].as_f64().unwrap()), "{out}");
    // The mean cross-entropy takes every row's probability of its label.
    assert!((metric(&out, "loss") - p["loss"].as_f64().unwrap()).abs() < 1e-4, "{out} against onnxruntime's {}", p["loss"]);
    // Each row predicted as onnxruntime does, the unseen city included.
    let mut worst = 0f64;
    for (i, r) in rows.iter().enumerate() {
        let out = ok(&["predict", "--model", &pipeline, "--row", &serde_json::json!({"amount": r["amount"], "city": r["city"]}).to_string()]);
        let want = p["label"][i].as_i64().unwrap();
        assert!(out.starts_with(&format!("prediction: {want} (")), "row {} ({r}): {out}, onnxruntime {want}", i + 1);
        let probs: Vec<f64> = p["probs"][i].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let shown = metric(&out, &want.to_string());
        worst = worst.max((shown - probs[want as usize]).abs());
    }
    assert!(worst < 1e-4, "printed probabilities (4 decimals) differ from onnxruntime's by {worst}");
    println!(
        "pipeline.onnx: {} rows, onnxruntime's class for each (the unseen city included), evaluate's accuracy and loss as onnxruntime's: {out}",
        rows.len()
    );
}
