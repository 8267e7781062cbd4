//! The learning commands against Postgres directly (`--source postgres://...`): capture runs
//! in-process and hands typed events over a channel, no Kafka and no serialisation.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::Lines;
use tensorcdc_dataset::mnist::{self, Split};
use tensorcdc_localpg::{LocalPg, Options};
use tokio_postgres::NoTls;

const FASHION: &str = "/usr/share/datasets/fashion-mnist";

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tensorcdc"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn train_evaluate_predict_from_postgres_in_process() {
    let pg = LocalPg::start(Options { no_fsync: true, ..Default::default() }).unwrap();
    let url = pg.url("postgres");
    let (c, conn) = tokio_postgres::connect(&pg.conninfo("postgres"), NoTls).await.unwrap();
    tokio::spawn(conn);
    let train = mnist::load(Path::new(FASHION), Split::Train).unwrap().truncate(3000);
    let test = mnist::load(Path::new(FASHION), Split::Test).unwrap().truncate(300);
    tensorcdc_postgres::load::load_examples(&c, "mnist_train", &train, 1000).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");

    let out = bin().args(["train", "--source", &url, "--epochs", "3", "--out", model.to_str().unwrap()]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("training on 3000 examples (3000 records read, 0 skipped)"), "{stdout}");

    // Evaluate waits for mnist_test, which does not exist yet; its rows arrive after.
    let mut eval = bin()
        .args(["evaluate", "--source", &url, "--table", "mnist_test", "--stream-timeout", "3000", "--model", model.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Lines::of(eval.stdout.take().unwrap());
    // Wait for the in-process capture's slot before inserting.
    wait_for(&c, "SELECT count(*) FROM pg_replication_slots WHERE active", 1, 30, "evaluate's slot").await;
    tensorcdc_postgres::load::load_examples(&c, "mnist_test", &test, 100).await.unwrap();
    let last = lines.rest(120, "evaluate").pop().unwrap_or_default();
    assert!(eval.wait().unwrap().success());
    assert!(last.starts_with("final: 300 examples"), "{last}");
    let acc: f64 = last.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(acc > 0.6, "{last}");

    // Live predictions with their latency, written to a table too.
    let mut follow = bin()
        .args(["predict", "--follow", "--source", &url, "--table", "mnist_manual", "--max", "3", "--model", model.to_str().unwrap()])
        .args(["--predictions-table", "mnist_predictions"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    // The follower's own slot (evaluate's may linger a moment after it exits): rows inserted
    // before the follower started would be snapshot rows, without a latency.
    wait_for(&c, "SELECT count(*) FROM pg_replication_slots WHERE active AND slot_name LIKE 'tensorcdc_mnist_manual_%'", 1, 30, "the follower's slot").await;
    let manual = test.clone().truncate(3);
    tensorcdc_postgres::load::load_examples(&c, "mnist_manual", &manual, 1).await.unwrap();
    let preds: Vec<serde_json::Value> = Lines::of(stdout).rest(60, "predictions").iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(follow.wait().unwrap().success());
    assert_eq!(preds.len(), 3);
    for (i, p) in preds.iter().enumerate() {
        assert_eq!(p["key"], (i + 1).to_string(), "{p}");
        assert_eq!(p["label"], manual.labels[i].to_string());
        assert!(p["position"].as_str().unwrap().starts_with("lsn "), "{p}");
        assert!(p["latency_ms"].as_f64().is_some_and(|l| l < 5000.0), "{p}");
    }
    let n: i64 = c.query_one("SELECT count(*) FROM mnist_predictions", &[]).await.unwrap().get(0);
    assert_eq!(n, 3);
    // The throwaway slots of the in-process readers are gone (the server drops a temporary
    // slot a moment after its connection ends).
    wait_for(&c, "SELECT count(*) FROM pg_replication_slots", 0, 10, "no slot left by the readers").await;
}

/// Waits for a condition on the database, failing after `secs` seconds.
async fn wait_for(c: &tokio_postgres::Client, sql: &str, want: i64, secs: u64, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let n: i64 = c.query_one(sql, &[]).await.unwrap().get(0);
        if n == want {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: {sql} gave {n}, expected {want}, after {secs}s");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_readers_leave_no_slot_and_batch_reads_fail_fast() {
    let pg = LocalPg::start(Options { no_fsync: true, ..Default::default() }).unwrap();
    let url = pg.url("postgres");
    let (c, conn) = tokio_postgres::connect(&pg.conninfo("postgres"), NoTls).await.unwrap();
    tokio::spawn(conn);
    let train = mnist::load(Path::new(FASHION), Split::Train).unwrap();
    tensorcdc_postgres::load::load_examples(&c, "mnist_train", &train, 5000).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    // kill -9 of train --source while it reads its snapshot of 60,000 rows.
    let mut child =
        bin().args(["train", "--source", &url, "--epochs", "1", "--out", model.to_str().unwrap()]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_for(&c, "SELECT count(*) FROM pg_replication_slots WHERE active", 1, 30, "train's slot").await;
    child.kill().unwrap();
    child.wait().unwrap();
    wait_for(&c, "SELECT count(*) FROM pg_replication_slots", 0, 10, "no slot after kill -9 of train --source").await;
    // The same for a follower (predict --follow) once it streams.
    let out = bin().args(["train", "--source", &url, "--epochs", "1", "--limit", "2000", "--out", model.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for(&c, "SELECT count(*) FROM pg_replication_slots", 0, 10, "no slot after train --source").await;
    let mut follow = bin()
        .args(["predict", "--follow", "--source", &url, "--table", "mnist_manual", "--model", model.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&c, "SELECT count(*) FROM pg_replication_slots WHERE active", 1, 30, "the follower's slot").await;
    follow.kill().unwrap();
    follow.wait().unwrap();
    wait_for(&c, "SELECT count(*) FROM pg_replication_slots", 0, 10, "no slot after kill -9 of predict --follow").await;
    // An evaluation that reads nothing says so and fails.
    c.batch_execute("CREATE TABLE mnist_empty(id serial PRIMARY KEY, label smallint, pixels bytea)").await.unwrap();
    let out =
        bin().args(["evaluate", "--source", &url, "--table", "mnist_empty", "--stream-timeout", "1000", "--model", model.to_str().unwrap()]).output().unwrap();
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to evaluate"), "{}", String::from_utf8_lossy(&out.stderr));
    // A batch read at a closed port fails within 10 s, naming host and port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let t = std::time::Instant::now();
    let out =
        bin().args(["train", "--source", &format!("postgres://postgres@127.0.0.1:{closed}/postgres"), "--out", model.to_str().unwrap()]).output().unwrap();
    assert!(!out.status.success());
    assert!(t.elapsed() < std::time::Duration::from_secs(10), "took {:?}", t.elapsed());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{closed}")) && err.contains("refused"), "{err}");
}
