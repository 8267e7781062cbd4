//! A Keras user's own saved models served by tensorcdc: Keras 3.15 (the tests' venv) trains
//! the blog's MLP, a CNN and a network of the other supported layers on Fashion-MNIST and
//! saves them (`scripts/keras_reference.py`, which also writes Keras' own accuracy, loss and
//! probabilities). `tensorcdc evaluate --model X.keras` on the 10,000 test rows in Postgres
//! gives Keras' accuracy to four decimals, and `predict --follow` on inserted rows gives
//! Keras' class for every row with its probability within 1e-5. Files that do not match
//! their config are refused with an error naming the variable or the layer.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tensorcdc_localpg::{LocalPg, Options};

const FASHION: &str = "/usr/share/datasets/fashion-mnist";
const PYTHON: &str = "/var/tmp/tensorcdc-tools/pyvenv/bin/python";

fn tensorcdc(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tensorcdc")).args(args).output().expect("run tensorcdc")
}

fn ok(args: &[&str]) -> String {
    let out = tensorcdc(args);
    assert!(out.status.success(), "tensorcdc {args:?} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(args: &[&str]) -> String {
    let out = tensorcdc(args);
    assert!(!out.status.success(), "tensorcdc {args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// The number after `key: ` in a line of output.
fn metric(out: &str, key: &str) -> f64 {
    let at = out.rfind(&format!("{key}: ")).unwrap_or_else(|| panic!("no {key} in {out}")) + key.len() + 2;
    out[at..].split(|c: char| c.is_whitespace()).next().unwrap().parse().unwrap()
}

/// Runs the reference script into `dir`; returns its report.
fn keras_reference(dir: &Path) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/keras_reference.py");
    let out = Command::new(PYTHON).args([script, FASHION, dir.to_str().unwrap()]).output().expect("run the Keras reference (scripts/install-deps.sh makes its venv)");
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
    }

    // predict --follow: each inserted row gets Keras' class and probability.
    let rows = keras["cnn"]["probs"].as_array().unwrap().len();
    for name in ["cnn", "layers"] {
        let table = format!("live_{name}");
        pg.psql("postgres", &["-c", &format!("CREATE TABLE {table} (LIKE mnist_test INCLUDING ALL)")]).unwrap();
        let model = dir.path().join(format!("{name}.keras"));
        let mut follow = Command::new(env!("CARGO_BIN_EXE_tensorcdc"))
            .args(["predict", "--follow", "--source", &url, "--table", &table, "--max", &rows.to_string(), "--model", model.to_str().unwrap()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let active = pg.psql("postgres", &["-At", "-c", &format!("SELECT count(*) FROM pg_replication_slots WHERE active AND slot_name LIKE 'tensorcdc_{table}_%'")]).unwrap();
            if active.trim() == "1" {
                break;
            }
            assert!(Instant::now() < deadline, "{name}: the follower's slot within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        pg.psql("postgres", &["-c", &format!("INSERT INTO {table} SELECT * FROM mnist_test ORDER BY id LIMIT {rows}")]).unwrap();
        let lines = common::Lines::of(follow.stdout.take().unwrap()).rest(60, "predictions");
        assert!(follow.wait().unwrap().success());
        let preds: Vec<serde_json::Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(preds.len(), rows, "{name}: {lines:?}");
        let mut worst = 0f64;
        for p in &preds {
            let id: usize = p["key"].as_str().unwrap().parse().unwrap();
            let want: Vec<f64> = keras[name]["probs"][id - 1].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            let class = (0..10).max_by(|&a, &b| want[a].total_cmp(&want[b])).unwrap();
            assert_eq!(p["prediction"].as_str().unwrap(), class.to_string(), "{name}: row {id}: {p}, Keras {want:?}");
            worst = worst.max((p["probability"].as_f64().unwrap() - want[class]).abs());
        }
        assert!(worst < 1e-5, "{name}: the largest difference from Keras' probability is {worst}");
        println!("{name}: {rows} rows followed, Keras' class for each, probabilities within {worst:.1e}");
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
