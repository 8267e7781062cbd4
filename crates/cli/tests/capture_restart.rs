//! Postgres restarts and a terminated walsender under `tensorcdc capture`, with the Kafka sink
//! (librdkafka's mock cluster and noida-db) and the file sink (the in-process sink:
//! `crates/postgres/tests/faults.rs`) (issue 21, first part): after each fault the
//! capture reconnects, every row inserted after it is delivered, and the slot's
//! `confirmed_flush_lsn` reaches the server's WAL position of the last insert within seconds.
//! Before the fix, the Kafka sink's delivery reports went to the first session's channel only,
//! so after a restart nothing was confirmed again and the slot pinned the WAL for ever.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use tensorcdc_change::Lsn;
use tensorcdc_localpg::{LocalPg, Options};
use tokio_postgres::NoTls;

mod common;
use common::Kill;

async fn connect(pg: &LocalPg) -> tokio_postgres::Client {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match tokio_postgres::connect(&pg.conninfo("postgres"), NoTls).await {
            Ok((c, conn)) => {
                tokio::spawn(conn);
                return c;
            }
            Err(e) => assert!(Instant::now() < deadline, "Postgres did not come back: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Inserts `n` rows (ids continue); returns the server's WAL position after the commit.
async fn insert(c: &tokio_postgres::Client, n: i64) -> Lsn {
    c.batch_execute(&format!("INSERT INTO mnist_train(label, pixels) SELECT i % 10, decode(repeat('00', 784), 'hex') FROM generate_series(1, {n}) i"))
        .await
        .unwrap();
    c.query_one("SELECT pg_current_wal_lsn()::text", &[]).await.unwrap().get::<_, String>(0).parse().unwrap()
}

/// Waits until the slot has confirmed `target`, failing after 30 s with what it holds.
async fn confirmed(c: &tokio_postgres::Client, slot: &str, target: Lsn, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let at: Option<String> =
            c.query_opt("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", &[&slot]).await.unwrap().and_then(|r| r.get(0));
        let at: Lsn = at.map(|s| s.parse().unwrap()).unwrap_or_default();
        if at >= target {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: the slot confirmed {at}, the server is at {target} after 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ids_in_file(path: &Path) -> std::collections::BTreeSet<i64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["value"]["after"]["id"].as_i64())
        .collect()
}

fn records_in_topic(brokers: &str, topic: &str) -> i64 {
    let c: BaseConsumer = rdkafka::ClientConfig::new().set("bootstrap.servers", brokers).set("group.id", "count").create().unwrap();
    let Ok(md) = c.fetch_metadata(Some(topic), Duration::from_secs(5)) else { return 0 };
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else { return 0 };
    t.partitions().iter().map(|p| c.fetch_watermarks(topic, p.id(), Duration::from_secs(5)).map(|w| w.1).unwrap_or(0)).sum()
}

enum Sink {
    Kafka(MockCluster<'static, rdkafka::producer::DefaultProducerContext>),
    Noida(tensorcdc_kafka::testing::Noida),
    File(std::path::PathBuf),
}

async fn faults_with(sink: Sink) {
    // Keepalives every 3 s, so an idle slot's position moves on quickly.
    let mut pg = LocalPg::start(Options { no_fsync: true, settings: vec![("wal_sender_timeout".into(), "6s".into())], ..Default::default() }).unwrap();
    let mut c = connect(&pg).await;
    c.batch_execute(&tensorcdc_postgres::load::create_table_sql("mnist_train")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tensorcdc"));
    cmd.env("TENSORCDC_STATE_DIR", dir.path().join("state"))
        .args(["capture", "--postgres", &pg.url("postgres"), "--table-include-list", "public.mnist_train", "--slot-name", "restarts"])
        .args(["--converter", "json-noschema", "--set", "status.interval.ms=200"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("capture.err")).unwrap());
    match &sink {
        Sink::Kafka(m) => cmd.args(["--kafka", &m.bootstrap_servers()]),
        Sink::Noida(n) => cmd.args(["--kafka", &n.bootstrap()]),
        Sink::File(p) => cmd.arg("--sink").arg(format!("file:{}", p.display())),
    };
    let _capture = Kill(cmd.spawn().unwrap());
    let mut rows = 100;
    let target = insert(&c, 100).await;
    confirmed(&c, "restarts", target, "before any fault").await;
    for fault in ["pg_ctl restart -m fast", "pg_ctl restart -m immediate", "pg_terminate_backend(walsender)"] {
        match fault {
            "pg_ctl restart -m fast" => pg.restart_mode("fast").unwrap(),
            "pg_ctl restart -m immediate" => pg.restart_mode("immediate").unwrap(),
            _ => {
                c.batch_execute("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 'restarts' AND active").await.unwrap();
            }
        }
        c = connect(&pg).await;
        let target = insert(&c, 50).await;
        rows += 50;
        confirmed(&c, "restarts", target, &format!("after {fault}")).await;
        // Every row so far was delivered (at least once).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let have = match &sink {
                Sink::Kafka(m) => records_in_topic(&m.bootstrap_servers(), "tf.public.mnist_train"),
                Sink::Noida(n) => records_in_topic(&n.bootstrap(), "tf.public.mnist_train"),
                Sink::File(p) => ids_in_file(p).len() as i64,
            };
            if have >= rows {
                break;
            }
            assert!(Instant::now() < deadline, "after {fault}: {have} of {rows} rows delivered");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Each outage is said once it is over: one line per reconnect, with how long it took.
    let said = std::fs::read_to_string(dir.path().join("capture.err")).unwrap();
    assert_eq!(said.matches("capture: streaming again from").count(), 3, "{said}");
    if let Sink::File(p) = &sink {
        // The table's own ids (a crash restart makes its sequence skip some values).
        let ids: std::collections::BTreeSet<i64> = c.query("SELECT id::int8 FROM mnist_train", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
        assert_eq!(ids.len() as i64, rows);
        assert_eq!(ids_in_file(p), ids, "every row, none lost");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_sink_confirms_again_after_restarts() {
    faults_with(Sink::Kafka(MockCluster::new(1).unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_sink_on_noida_confirms_again_after_restarts() {
    faults_with(Sink::Noida(tensorcdc_kafka::testing::Noida::start().unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sink_confirms_again_after_restarts() {
    let dir = tempfile::tempdir().unwrap();
    faults_with(Sink::File(dir.path().join("events.jsonl"))).await;
    drop(dir);
}

/// Drops `slot` once no process holds it (a killed walsender lets go within moments).
async fn drop_slot(c: &tokio_postgres::Client, slot: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match c.execute("SELECT pg_drop_replication_slot($1)", &[&slot]).await {
            Ok(_) => return,
            Err(e) => assert!(Instant::now() < deadline, "dropping {slot}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A slot dropped while capture and run were stopped: each refuses to start, naming the slot
/// and what was lost, instead of a silent new snapshot (which `run` would count twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_slot_stops_capture_and_run() {
    let pg = LocalPg::start(Options { no_fsync: true, ..Default::default() }).unwrap();
    let c = connect(&pg).await;
    c.batch_execute(&tensorcdc_postgres::load::create_table_sql("mnist_train")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let capture = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tensorcdc"));
        cmd.env("TENSORCDC_STATE_DIR", dir.path().join("state"))
            .args(["capture", "--postgres", &pg.url("postgres"), "--table-include-list", "public.mnist_train", "--slot-name", "dropped"])
            .args(["--converter", "json-noschema", "--set", "status.interval.ms=200", "--sink"])
            .arg(format!("file:{}", events.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    };
    let first = Kill(capture().spawn().unwrap());
    let target = insert(&c, 10).await;
    confirmed(&c, "dropped", target, "the first capture").await;
    drop(first);
    drop_slot(&c, "dropped").await;
    insert(&c, 5).await;
    let t0 = Instant::now();
    let out = capture().output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && t0.elapsed() < Duration::from_secs(10), "{err}");
    assert!(err.contains("replication slot \"dropped\" is gone") && err.contains("snapshot.mode=when_needed"), "{err}");
    assert_eq!(ids_in_file(&events).len(), 10, "nothing sent again");

    // run: version 1 on the table's 10 labelled rows; the slot dropped; the next run refuses.
    let models = dir.path().join("models");
    let run = |timeout: &str| {
        Command::new(env!("CARGO_BIN_EXE_tensorcdc"))
            .args(["run", "--source", &pg.url("postgres"), "--table", "mnist_train", "--label", "label", "--metrics-addr", "off"])
            .args(["--layers", "4", "--initial-epochs", "1", "--stream-timeout", timeout, "--out", models.to_str().unwrap()])
            .output()
            .unwrap()
    };
    c.batch_execute("UPDATE mnist_train SET label = id % 2").await.unwrap();
    let out = run("2000");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("version 1: 15 examples seen"),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let history = std::fs::read_to_string(models.join("versions.jsonl")).unwrap();
    drop_slot(&c, "tensorcdc_run_mnist_train").await;
    let t0 = Instant::now();
    let out = run("2000");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && t0.elapsed() < Duration::from_secs(15), "{err}");
    assert!(err.contains("replication slot \"tensorcdc_run_mnist_train\" is gone"), "{err}");
    assert_eq!(std::fs::read_to_string(models.join("versions.jsonl")).unwrap(), history, "no version counts the rows again");
}
