//! The CLI on real data: `mnist sql` output loaded with `psql -f` into a private Postgres
//! reads back byte-identical; `train`/`evaluate`/`predict` on Fashion-MNIST and their errors.

mod common;

use std::path::Path;

use common::{fails, ok, tensorcdc};
use tensorcdc_dataset::mnist::{self, Split};
use tensorcdc_localpg::{LocalPg, Options};

const FASHION: &str = "/usr/share/datasets/fashion-mnist";

#[test]
fn sql_files_load_with_psql_and_read_back_identical() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let printed = ok(&["mnist", "sql", "--data", FASHION, "--out", out, "--limit", "300"]);
    assert!(printed.contains("mnist_train.sql (300 rows)"), "{printed}");
    let pg = LocalPg::start(Options { no_fsync: true, ..Default::default() }).unwrap();
    for split in [Split::Train, Split::Test] {
        let file = dir.path().join(format!("{}.sql", split.table()));
        pg.psql("postgres", &["-f", file.to_str().unwrap()]).unwrap();
        let rows = pg.psql("postgres", &["-At", "-c", &format!("SELECT id, label, encode(pixels, 'hex') FROM {} ORDER BY id", split.table())]).unwrap();
        let expected = mnist::load(Path::new(FASHION), split).unwrap().truncate(300);
        let lines: Vec<&str> = rows.lines().collect();
        assert_eq!(lines.len(), 300);
        for (i, line) in lines.iter().enumerate() {
            let parts: Vec<&str> = line.split('|').collect();
            assert_eq!(parts[0], (i + 1).to_string());
            assert_eq!(parts[1], expected.labels[i].to_string(), "label of row {}", i + 1);
            assert_eq!(hex::decode(parts[2]).unwrap(), expected.image(i), "pixels of row {}", i + 1);
        }
    }
}

#[test]
fn mnist_load_copies_rows_into_postgres() {
    let pg = LocalPg::start(Options { no_fsync: true, ..Default::default() }).unwrap();
    let out = ok(&["mnist", "load", "--data", FASHION, "--postgres", &pg.url("postgres"), "--limit", "250", "--chunk", "100"]);
    assert!(out.contains("mnist_train: 250 rows") && out.contains("mnist_test: 250 rows"), "{out}");
    let got = pg.psql("postgres", &["-At", "-c", "SELECT count(*), min(id), max(id), sum(label) FROM mnist_test"]).unwrap();
    let test = mnist::load(Path::new(FASHION), Split::Test).unwrap().truncate(250);
    let label_sum: u64 = test.labels.iter().map(|&l| l as u64).sum();
    assert_eq!(got.trim(), format!("250|1|250|{label_sum}"));
    let e = fails(&["mnist", "load", "--data", FASHION, "--postgres", &pg.url("postgres"), "--split", "nope"]);
    assert!(e.contains("--split \"nope\""), "{e}");
}

#[test]
fn train_evaluate_predict_and_their_errors() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    let m = model.to_str().unwrap();
    let curves = dir.path().join("curves.png");
    let out = ok(&["train", "--data", FASHION, "--limit", "6000", "--epochs", "2", "--out", m, "--curves", curves.to_str().unwrap()]);
    assert!(out.contains("Epoch 2/2") && out.contains("94/94 [") && out.contains("accuracy:"), "{out}");
    let acc: f64 = out.lines().find(|l| l.starts_with("test:")).and_then(|l| l.rsplit(' ').next()).unwrap().parse().unwrap();
    assert!(acc > 0.7, "{out}");
    let img = image::open(&curves).unwrap();
    assert_eq!((img.width(), img.height()), (960, 320));

    let eval = ok(&["evaluate", "--data", FASHION, "--limit", "1000", "--model", m]);
    assert!(eval.starts_with("1000 examples - loss: "), "{eval}");

    let test = mnist::load(Path::new(FASHION), Split::Test).unwrap();
    let pixels: Vec<String> = test.image(0).iter().map(|p| p.to_string()).collect();
    let png = dir.path().join("digit.png");
    let pred = ok(&["predict", "--model", m, "--pixels", &pixels.join(","), "--png", png.to_str().unwrap()]);
    assert!(pred.contains("prediction: ") && pred.contains("probabilities: 0: "), "{pred}");
    assert_eq!(pred.lines().take(28).count(), 28);
    let img = image::open(&png).unwrap();
    assert_eq!((img.width(), img.height()), (300, 330));

    let e = fails(&["predict", "--model", m, "--pixels", "1,2,3"]);
    assert!(e.contains("has 3 values, expected 784"), "{e}");
    let mut bad = pixels.clone();
    bad[10] = "300".into();
    let e = fails(&["predict", "--model", m, "--pixels", &bad.join(",")]);
    assert!(e.contains("value 11") && e.contains("300") && e.contains("0..=255"), "{e}");
    let e = fails(&["predict", "--model", dir.path().join("nope").to_str().unwrap(), "--pixels", &pixels.join(",")]);
    assert!(e.contains("nope") && e.contains("no such checkpoint"), "{e}");
    let e = fails(&["train", "--data", dir.path().to_str().unwrap(), "--out", m]);
    assert!(e.contains("train-images-idx3-ubyte.gz not found"), "{e}");
}

#[test]
fn download_offline_says_how_to_use_local_files() {
    let dir = tempfile::tempdir().unwrap();
    // Port 9 on loopback: nothing listens, so this fails at once as it would offline.
    let e = fails(&[
        "mnist",
        "sql",
        "--download",
        "--url",
        "http://127.0.0.1:9/mnist/",
        "--data",
        dir.path().to_str().unwrap(),
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert!(e.contains("--data DIR") && e.contains("127.0.0.1:9"), "{e}");
}

#[test]
fn capture_takes_a_debezium_registration_file_as_is() {
    let pg = LocalPg::start(Options { no_fsync: true, ..Default::default() }).unwrap();
    let out = ok(&["mnist", "load", "--data", FASHION, "--postgres", &pg.url("postgres"), "--limit", "20", "--split", "train"]);
    assert!(out.contains("mnist_train: 20 rows"));
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/register-postgres.json");
    let o = tensorcdc(&["capture", "--config", file, "--postgres", &pg.url("postgres"), "--snapshot-mode", "initial_only", "--set", "unknown.key=1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("ignoring unknown connector properties: unknown.key"), "{stderr}");
    let train = mnist::load(Path::new(FASHION), Split::Train).unwrap().truncate(20);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 20);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["topic"], "tf.public.mnist_train");
        // The blog's chain: key = label as text, value = the 784 pixels as CSV.
        assert_eq!(l["key"], train.labels[i] as i64, "{l}");
        let csv: Vec<u8> = l["value"].as_str().unwrap().split(',').map(|v| v.parse().unwrap()).collect();
        assert_eq!(csv, train.image(i));
    }
    // An invalid value names its key.
    let e = fails(&["capture", "--config", file, "--postgres", &pg.url("postgres"), "--set", "snapshot.mode=sometimes"]);
    assert!(e.contains("snapshot.mode"), "{e}");
}
