//! The first hour of a new user (issue 24): nothing silent, every wait says why, every flag
//! does what its help says.
//!
//! - `run` on a table without a primary key, a table that does not exist, a label column that
//!   does not exist or cannot be a label: a non-zero exit within 5 s naming what is missing,
//!   and no replication slot (nor predictions table) left behind.
//! - A bounded Kafka read from a dead broker or a mistyped topic says so within 10 s, naming
//!   the address or listing the topics that exist.
//! - `predict --follow --max N` stops at N predictions, in-process and through Kafka;
//!   `--classes fashion` names Fashion-MNIST's classes; `--pixels` takes a list.
//! - `train --label ... --curves` writes the picture; log lines carry no colour codes when
//!   stderr is a file.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use tensorcdc_localpg::{LocalPg, Options};
use tokio_postgres::NoTls;

mod common;
use common::{Kill, Lines};

const FASHION: &str = "/usr/share/datasets/fashion-mnist";

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tensorcdc"));
    c.env_remove("TENSORCDC_LOG").env_remove("RUST_LOG");
    c
}

async fn pg() -> (LocalPg, tokio_postgres::Client) {
    let pg = LocalPg::start(Options { no_fsync: true, ..Default::default() }).unwrap();
    let (c, conn) = tokio_postgres::connect(&pg.conninfo("postgres"), NoTls).await.unwrap();
    tokio::spawn(conn);
    (pg, c)
}

async fn slots(c: &tokio_postgres::Client) -> Vec<String> {
    c.query("SELECT slot_name::text FROM pg_replication_slots", &[]).await.unwrap().iter().map(|r| r.get(0)).collect()
}

/// Runs `tensorcdc args`, expecting a failure within `secs`; returns its stderr.
fn fails_within(args: &[&str], secs: u64) -> String {
    let t0 = Instant::now();
    let mut child = Kill(bin().args(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap());
    let err = Lines::of(child.0.stderr.take().unwrap());
    let lines = err.rest(secs, &format!("{args:?} to end"));
    let status = child.0.wait().unwrap();
    let took = t0.elapsed();
    let text = lines.join("\n");
    assert!(!status.success(), "{args:?} exited 0:\n{text}");
    assert!(took < Duration::from_secs(secs), "{args:?} took {took:?}:\n{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_refuses_what_it_cannot_learn_from_at_once_and_leaves_no_slot() {
    let (pg, c) = pg().await;
    let url = pg.url("postgres");
    c.batch_execute(
        "CREATE TABLE nopk(a int, b float8, grade int); INSERT INTO nopk SELECT i, (i % 2) * 10 + i % 3, i % 2 FROM generate_series(1, 1000) i;
         INSERT INTO nopk SELECT i, (i % 2) * 10, NULL FROM generate_series(1001, 1010) i;
         CREATE TABLE loans(id int PRIMARY KEY, income float8, grade int, arr float8[], at timestamptz);
         INSERT INTO loans SELECT i, i, i % 2, ARRAY[i, i], now() FROM generate_series(1, 100) i;",
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("models");
    let run = |table: &str, label: &str| -> String {
        fails_within(&["run", "--source", &url, "--table", table, "--label", label, "--metrics-addr", "off", "--out", out.to_str().unwrap()], 5)
    };
    let e = run("nopk", "grade");
    assert!(e.contains("table public.nopk has no primary key") && e.contains("ADD PRIMARY KEY") && e.contains("--key"), "{e}");
    let e = fails_within(
        &["run", "--source", &url, "--table", "nopk", "--label", "grade", "--key", "a", "--metrics-addr", "off", "--out", out.to_str().unwrap()],
        5,
    );
    assert!(e.contains("has no primary key, so --key a needs REPLICA IDENTITY FULL") && e.contains("ALTER TABLE public.nopk REPLICA IDENTITY FULL"), "{e}");
    let e = run("loanz", "grade");
    assert!(e.contains("table public.loanz does not exist") && e.contains("did you mean public.loans?"), "{e}");
    let e = run("loans", "grad");
    assert!(e.contains("has no column \"grad\"") && e.contains("did you mean \"grade\"?"), "{e}");
    let e = run("loans", "arr");
    assert!(e.contains("--label \"arr\" is of type double precision[]"), "{e}");
    let e = run("loans", "at");
    assert!(e.contains("--label \"at\" is of type timestamp with time zone"), "{e}");
    let e = fails_within(&["run", "--source", &url, "--table", "loans", "--label", "grade", "--layers", "8,0", "--metrics-addr", "off"], 5);
    assert!(e.contains("hidden layer 2 has 0 units"), "{e}");
    assert_eq!(slots(&c).await, Vec::<String>::new(), "no slot is left by a run that cannot work");
    let preds: i64 = c.query_one("SELECT count(*) FROM pg_class WHERE relname LIKE '%_predictions'", &[]).await.unwrap().get(0);
    assert_eq!(preds, 0, "no predictions table is created");
    // A one-off read of a mistyped table is an error naming it, not a warning and "no rows".
    let e = fails_within(&["train", "--source", &url, "--table", "loanz", "--label", "grade"], 10);
    assert!(e.contains("no table public.loanz to read") && e.contains("did you mean public.loans?"), "{e}");
    // A table without the MNIST columns and no --label: the error names --label.
    let e = fails_within(&["train", "--source", &url, "--table", "loans"], 10);
    assert!(e.contains("name its label column with --label COL"), "{e}");
    // Stderr is a pipe here: no colour codes in the log lines.
    assert!(!e.contains('\u{1b}'), "ANSI codes on a pipe: {e:?}");
    // ... nor in a file: a capture's warning that its include list matches no table yet, as a
    // log file has it.
    let log = tempfile::NamedTempFile::new().unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut cap = Kill(
        bin()
            .env("TENSORCDC_STATE_DIR", state.path())
            .args(["capture", "--postgres", &url, "--table-include-list", "public.nothing_here", "--slot-name", "ansi", "--sink", "stdout"])
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = std::fs::read_to_string(log.path()).unwrap();
        if text.contains("matches no table yet") {
            break text;
        }
        assert!(Instant::now() < deadline, "no warning in 20 s: {text}");
        std::thread::sleep(Duration::from_millis(50));
    };
    cap.0.kill().unwrap();
    cap.0.wait().unwrap();
    assert!(text.contains(" WARN "), "{text}");
    assert!(!text.contains('\u{1b}'), "ANSI codes in a file: {text:?}");
    c.batch_execute("SELECT pg_drop_replication_slot('ansi') FROM pg_replication_slots WHERE slot_name = 'ansi' AND NOT active").await.unwrap();

    // A keyless table with REPLICA IDENTITY FULL and --key: learnt from and predicted, each
    // row named by its key column.
    c.batch_execute("ALTER TABLE nopk REPLICA IDENTITY FULL").await.unwrap();
    let done = bin()
        .args(["run", "--source", &url, "--table", "nopk", "--label", "grade", "--key", "a", "--metrics-addr", "off", "--stream-timeout", "2000"])
        .args(["--layers", "8", "--initial-epochs", "10", "--classes", "fashion", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&done.stdout);
    assert!(done.status.success(), "{text}{}", String::from_utf8_lossy(&done.stderr));
    assert!(text.contains("version 1: 1000 examples seen"), "{text}");
    let keys: Vec<String> = c.query("SELECT row_key FROM nopk_predictions ORDER BY row_key", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(keys, (1001..=1010).map(|i| i.to_string()).collect::<Vec<_>>(), "the ten unlabelled rows, by --key");
    // --classes: the name of each predicted class beside it.
    let named: i64 = c
        .query_one("SELECT count(*) FROM nopk_predictions WHERE class_name = CASE prediction WHEN '0' THEN 'T-shirt/top' WHEN '1' THEN 'Trouser' END", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(named, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_read_says_why_it_waits() {
    // A dead broker: the address is named within 10 s.
    let t0 = Instant::now();
    let mut child = Kill(
        bin()
            .args(["train", "--kafka", "127.0.0.1:1", "--topic", "tf.public.mnist_train", "--wait-timeout", "6"])
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let err = Lines::of(child.0.stderr.take().unwrap());
    let said = loop {
        let l = err.next(10, "a line about the dead broker").expect("stderr ended first");
        if l.contains("no broker answers at 127.0.0.1:1") {
            break l;
        }
    };
    assert!(t0.elapsed() < Duration::from_secs(10), "{said} after {:?}", t0.elapsed());
    let rest = err.rest(15, "the read to give up").join("\n");
    assert!(!child.0.wait().unwrap().success());
    assert!(rest.contains("no Kafka broker answered at 127.0.0.1:1 within 6 s"), "{rest}");

    // A mistyped topic: the topics there are listed, with the nearest name.
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("tf.public.mnist_train", 1, 1).unwrap();
    mock.create_topic("tf.public.mnist_test", 1, 1).unwrap();
    let t0 = Instant::now();
    let mut child = Kill(
        bin()
            .args(["train", "--kafka", &mock.bootstrap_servers(), "--topic", "tf.public.mnist_trian", "--wait-timeout", "3"])
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let err = Lines::of(child.0.stderr.take().unwrap());
    let said = loop {
        let l = err.next(10, "a line about the missing topic").expect("stderr ended first");
        if l.contains("waiting for topic tf.public.mnist_trian") {
            break l;
        }
    };
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert!(
        said.contains("it does not exist")
            && said.contains("tf.public.mnist_test, tf.public.mnist_train")
            && said.contains("did you mean tf.public.mnist_train?"),
        "{said}"
    );
    err.rest(15, "the read to give up");
    assert!(!child.0.wait().unwrap().success());
}

/// A small MNIST checkpoint (1 epoch on 1,000 Fashion-MNIST images).
fn mnist_model(dir: &std::path::Path) -> std::path::PathBuf {
    let m = dir.join("model");
    let out = bin().args(["train", "--data", FASHION, "--limit", "1000", "--epochs", "1", "--out", m.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    m
}

fn predictions(args: &[&str]) -> Vec<String> {
    let out = bin().args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with('{')).map(String::from).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_stops_at_n_predictions_in_process_and_through_kafka() {
    let dir = tempfile::tempdir().unwrap();
    let model = mnist_model(dir.path());
    let (pg, c) = pg().await;
    let url = pg.url("postgres");
    let test = tensorcdc_dataset::mnist::load(std::path::Path::new(FASHION), tensorcdc_dataset::mnist::Split::Test).unwrap().truncate(9);
    tensorcdc_postgres::load::load_examples(&c, "mnist_test", &test, 100).await.unwrap();
    // In-process: the 9 rows of the snapshot arrive in one batch; --max 1 makes one prediction.
    let p = predictions(&["predict", "--follow", "--source", &url, "--table", "mnist_test", "--model", model.to_str().unwrap(), "--max", "1"]);
    assert_eq!(p.len(), 1, "{p:?}");
    // The table as an older tensorcdc made it (the image follower's own columns, with one
    // prediction in it): it is taken over, its rows kept, its `label` made text.
    c.batch_execute(
        "CREATE TABLE named(id BIGSERIAL PRIMARY KEY, row_key TEXT, digit SMALLINT, probability REAL, label SMALLINT, model_version TEXT, \
         source_position TEXT, latency_ms DOUBLE PRECISION, class TEXT, predicted_at TIMESTAMPTZ DEFAULT now()); \
         INSERT INTO named(row_key, digit, probability, label, class) VALUES ('old', 3, 0.9, 3, 'Dress')",
    )
    .await
    .unwrap();
    let p = predictions(&[
        "predict",
        "--follow",
        "--source",
        &url,
        "--table",
        "mnist_test",
        "--model",
        model.to_str().unwrap(),
        "--max",
        "4",
        "--classes",
        "fashion",
        "--predictions-table",
        "named",
    ]);
    assert_eq!(p.len(), 4, "{p:?}");
    let in_table: i64 = c
        .query_one(
            "SELECT count(*) FROM named WHERE class_name = (ARRAY['T-shirt/top','Trouser','Pullover','Dress','Coat','Sandal','Shirt','Sneaker','Bag','Ankle boot'])[prediction::int + 1]",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(in_table, 4, "the class names are in the predictions table");
    let labels: Vec<(String, Option<String>)> =
        c.query("SELECT row_key, label FROM named ORDER BY id", &[]).await.unwrap().iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(labels.len(), 5, "the older row kept, four added: {labels:?}");
    assert_eq!(labels[0], ("old".to_string(), Some("3".to_string())));
    for (key, label) in &labels[1..] {
        let id: usize = key.parse().unwrap();
        assert_eq!(label.as_deref(), Some(test.labels[id - 1].to_string().as_str()), "row {key}: the source row's label");
    }
    for line in &p {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let digit: usize = v["prediction"].as_str().unwrap().parse().unwrap();
        assert_eq!(v["class_name"], tensorcdc_dataset::mnist::FASHION_CLASSES[digit], "{line}");
    }
    // One image given as a Python list, with Fashion-MNIST's class names.
    let px: Vec<String> = test.image(0).iter().map(u8::to_string).collect();
    let out =
        bin().args(["predict", "--model", model.to_str().unwrap(), "--classes", "fashion", "--pixels", &format!("[{}]", px.join(", "))]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let said = text.lines().find_map(|l| l.strip_prefix("prediction: ")).expect("a prediction line");
    assert!(tensorcdc_dataset::mnist::FASHION_CLASSES.iter().any(|c| said.starts_with(&format!("{c} ("))), "{said}");
    assert!(text.contains("probabilities: T-shirt/top: "), "{text}");

    // Through Kafka: 9 CSV records (the blog's MnistToCsv form: the label as key, the pixels).
    let mock = MockCluster::new(1).unwrap();
    let producer: BaseProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", mock.bootstrap_servers()).create().unwrap();
    for i in 0..test.len() {
        let value: Vec<String> = test.image(i).iter().map(u8::to_string).collect();
        let (key, value) = (test.labels[i].to_string(), value.join(","));
        producer.send(BaseRecord::to("tf.public.mnist_manual").key(&key).payload(&value)).unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let p = predictions(&[
        "predict",
        "--follow",
        "--kafka",
        &mock.bootstrap_servers(),
        "--topic",
        "tf.public.mnist_manual",
        "--group",
        "first-hour",
        "--model",
        model.to_str().unwrap(),
        "--max",
        "1",
    ]);
    assert_eq!(p.len(), 1, "{p:?}");
    // Rows that were there before the process started carry no latency.
    assert!(p[0].contains("\"latency_ms\":null"), "{}", p[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curves_of_a_table_model() {
    let dir = tempfile::tempdir().unwrap();
    let (header, rows) = common::sklearn("breast_cancer", dir.path());
    let (pg, c) = pg().await;
    let cols: Vec<String> = header.iter().map(|h| if h == "target" { "target int".to_string() } else { format!("{h} float8") }).collect();
    c.batch_execute(&format!("CREATE TABLE bc(id serial PRIMARY KEY, {})", cols.join(", "))).await.unwrap();
    let values: Vec<String> = rows.iter().map(|r| format!("({})", r.join(","))).collect();
    c.batch_execute(&format!("INSERT INTO bc({}) VALUES {}", header.join(","), values.join(","))).await.unwrap();
    let png = dir.path().join("curves.png");
    let out = bin()
        .args(["train", "--source", &pg.url("postgres"), "--table", "bc", "--label", "target", "--epochs", "4", "--curves", png.to_str().unwrap()])
        .args(["--out", dir.path().join("m").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("curves: {}", png.display())));
    let img = image::open(&png).unwrap().to_rgb8();
    // Two panels (loss, accuracy) of 480x320, with the series' blue and orange points.
    assert_eq!((img.width(), img.height()), (960, 320));
    let has = |rgb: [u8; 3]| img.pixels().any(|p| p.0 == rgb);
    assert!(has([31, 119, 180]) && has([255, 127, 14]), "both curves are drawn");
}
