//! The broker under `tensorcdc capture --kafka`, with a writer committing a row every few
//! milliseconds: a fatal producer error (librdkafka's own, raised by the `kafka.fatal`
//! failpoint) is followed by a new producer from the last confirmed LSN, or, when every new
//! producer fails too, by a non-zero exit within seconds; noida-db paused with SIGSTOP for
//! 20 s, and killed and started again. Afterwards every committed row is in the topic at
//! least once and the slot confirms the server's position again. On noida-db a kill can lose
//! records the broker had acknowledged (its own shutdown does not sync them): the test tells
//! those apart by the LSN the slot had confirmed when the broker died.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Kill;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use tensorcdc_change::Lsn;
use tensorcdc_kafka::testing::Noida;
use tensorcdc_localpg::{LocalPg, Options};
use tokio_postgres::{Client, NoTls};

const TOPIC: &str = "tf.public.t";

async fn setup() -> (LocalPg, Client) {
    let pg = LocalPg::start(Options { no_fsync: true, ..Default::default() }).unwrap();
    let (c, conn) = tokio_postgres::connect(&pg.conninfo("postgres"), NoTls).await.unwrap();
    tokio::spawn(conn);
    c.batch_execute("CREATE TABLE t (id BIGSERIAL PRIMARY KEY, n INT NOT NULL)").await.unwrap();
    (pg, c)
}

fn capture(pg: &LocalPg, dir: &Path, brokers: &str, failpoints: &str) -> Kill {
    Kill(
        Command::new(env!("CARGO_BIN_EXE_tensorcdc"))
            .env("TENSORCDC_STATE_DIR", dir.join("state"))
            .env("TENSORCDC_FAILPOINTS", failpoints)
            .args(["capture", "--postgres", &pg.url("postgres"), "--table-include-list", "public.t", "--slot-name", "bf"])
            .args(["--converter", "json-noschema", "--kafka", brokers, "--set", "status.interval.ms=200", "--progress-interval", "1"])
            .stdout(Stdio::null())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(dir.join("capture.err")).unwrap())
            .spawn()
            .unwrap(),
    )
}

/// A row per transaction every 5 ms until stopped; returns each id with the server's WAL
/// position right after its commit (at or past the commit's end).
fn writer(url: String) -> (tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<BTreeMap<i64, Lsn>>) {
    let (stop, mut rx) = tokio::sync::watch::channel(false);
    let h = tokio::spawn(async move {
        let (c, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
        tokio::spawn(conn);
        let mut rows = BTreeMap::new();
        while !*rx.borrow_and_update() {
            let id: i64 = c.query_one("INSERT INTO t(n) VALUES (1) RETURNING id", &[]).await.unwrap().get(0);
            let lsn: String = c.query_one("SELECT pg_current_wal_lsn()::text", &[]).await.unwrap().get(0);
            rows.insert(id, lsn.parse().unwrap());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        rows
    });
    (stop, h)
}

async fn slot_confirmed(c: &Client) -> Lsn {
    let at: Option<String> =
        c.query_opt("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'bf'", &[]).await.unwrap().and_then(|r| r.get(0));
    at.map(|s| s.parse().unwrap()).unwrap_or_default()
}

/// Waits until the slot has confirmed the server's current position (30 s at most).
async fn catches_up(c: &Client, what: &str) {
    let target: Lsn = c.query_one("SELECT pg_current_wal_lsn()::text", &[]).await.unwrap().get::<_, String>(0).parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let at = slot_confirmed(c).await;
        if at >= target {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: the slot confirmed {at}, the server is at {target} after 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The row ids in the topic (as many records as its high watermarks say it holds).
fn ids_in_topic(brokers: &str) -> HashSet<i64> {
    let c: BaseConsumer = rdkafka::ClientConfig::new().set("bootstrap.servers", brokers).set("group.id", "count").create().unwrap();
    let md = c.fetch_metadata(Some(TOPIC), Duration::from_secs(5)).unwrap();
    let total: i64 = md.topics()[0].partitions().iter().map(|p| c.fetch_watermarks(TOPIC, p.id(), Duration::from_secs(5)).unwrap().1).sum();
    common::topic_ids(brokers, TOPIC, total)
}

/// Waits until every id is in the topic (60 s at most).
fn all_in_topic(brokers: &str, ids: &BTreeMap<i64, Lsn>, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let have = ids_in_topic(brokers);
        let missing = ids.keys().filter(|i| !have.contains(i)).count();
        if missing == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {missing} of {} rows not in the topic after 60 s", ids.len());
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn stderr_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("capture.err")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_producer_error_starts_a_new_producer_from_the_confirmed_lsn() {
    let (pg, c) = setup().await;
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let mut child = capture(&pg, dir.path(), &brokers, "kafka.fatal=200");
    let (stop, w) = writer(pg.conninfo("postgres"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !stderr_of(dir.path()).contains("capture: streaming again from") {
        assert!(Instant::now() < deadline, "no recovery line in 30 s:\n{}", stderr_of(dir.path()));
        assert!(child.0.try_wait().unwrap().is_none(), "capture exited:\n{}", stderr_of(dir.path()));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.send(true).unwrap();
    let ids = w.await.unwrap();
    all_in_topic(&brokers, &ids, "after a new producer");
    catches_up(&c, "after a new producer").await;
    assert!(child.0.try_wait().unwrap().is_none(), "the capture goes on");
    let said = stderr_of(dir.path());
    assert!(said.contains("starting a new producer"), "{said}");
    // "streaming again from LSN, N s after: why": the outage, from the fatal error to streaming.
    let line = said.lines().find(|l| l.contains("streaming again from")).unwrap();
    let secs: f64 = line.split(", ").nth(1).and_then(|s| s.split(' ').next()).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{line}"));
    assert!(secs < 10.0, "recovered {secs} s after the fatal error: {line}");
    eprintln!("{} rows, all in the topic; {line}", ids.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_that_can_never_recover_ends_the_capture_within_seconds() {
    let (pg, _c) = setup().await;
    let cluster = MockCluster::new(1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut child = capture(&pg, dir.path(), &cluster.bootstrap_servers(), "kafka.fatal_every=20");
    let (stop, w) = writer(pg.conninfo("postgres"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !stderr_of(dir.path()).contains("starting a new producer") {
        assert!(Instant::now() < deadline, "no fatal error in 30 s:\n{}", stderr_of(dir.path()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first_fatal = Instant::now();
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(first_fatal.elapsed() < Duration::from_secs(10), "still running 10 s after the first fatal error:\n{}", stderr_of(dir.path()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    stop.send(true).unwrap();
    w.await.unwrap();
    let said = stderr_of(dir.path());
    assert!(!status.success(), "exit status {status}");
    assert!(said.contains("OutOfOrderSequence") || said.contains("failpoint kafka.fatal"), "the error is named:\n{said}");
    assert!(said.contains("3 times within a minute"), "{said}");
    eprintln!("exited {status} {:.1} s after the first fatal error", first_fatal.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_paused_for_20_s_then_resumed_loses_nothing() {
    let (pg, c) = setup().await;
    let broker = Noida::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut child = capture(&pg, dir.path(), &broker.bootstrap(), "");
    let (stop, w) = writer(pg.conninfo("postgres"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(Command::new("kill").args(["-STOP", &broker.pid().to_string()]).status().unwrap().success());
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(child.0.try_wait().unwrap().is_none(), "the capture waits for a paused broker:\n{}", stderr_of(dir.path()));
    assert!(Command::new("kill").args(["-CONT", &broker.pid().to_string()]).status().unwrap().success());
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.send(true).unwrap();
    let ids = w.await.unwrap();
    all_in_topic(&broker.bootstrap(), &ids, "after SIGCONT");
    catches_up(&c, "after SIGCONT").await;
    assert!(child.0.try_wait().unwrap().is_none(), "the capture goes on:\n{}", stderr_of(dir.path()));
    // The wait is said once, and its end once.
    let said = stderr_of(dir.path());
    assert_eq!(said.matches("the sink has not confirmed a batch").count(), 1, "{said}");
    assert_eq!(said.matches("the sink delivers again").count(), 1, "{said}");
    eprintln!("{} rows, all in the topic after a 20 s pause", ids.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_and_started_again_loses_only_what_it_acknowledged_and_dropped() {
    let (pg, c) = setup().await;
    let mut broker = Noida::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut child = capture(&pg, dir.path(), &broker.bootstrap(), "");
    let (stop, w) = writer(pg.conninfo("postgres"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    broker.kill();
    // Nothing can be acknowledged while the broker is dead: what the slot confirms at the end
    // of the outage is what the broker acknowledged before it died.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let acknowledged = slot_confirmed(&c).await;
    broker.start_again().unwrap();
    let back = Instant::now();
    // The capture recovers, or exits non-zero within 10 s of a fatal error; then it is started again.
    let mut restarted = false;
    while back.elapsed() < Duration::from_secs(12) {
        if let Some(status) = child.0.try_wait().unwrap() {
            assert!(!status.success(), "a capture that gives up exits non-zero");
            child = capture(&pg, dir.path(), &broker.bootstrap(), "");
            restarted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.send(true).unwrap();
    let ids = w.await.unwrap();
    // Rows the broker did not acknowledge must all arrive; acknowledged ones it may have dropped.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (lost_by_broker, have) = loop {
        let have = ids_in_topic(&broker.bootstrap());
        let missing: Vec<(&i64, &Lsn)> = ids.iter().filter(|(i, _)| !have.contains(i)).collect();
        let ours: Vec<i64> = missing.iter().filter(|(_, l)| **l > acknowledged).map(|(i, _)| **i).collect();
        if ours.is_empty() {
            break (missing.len(), have.len());
        }
        assert!(
            Instant::now() < deadline,
            "{} rows committed after the last acknowledged LSN {acknowledged} are not in the topic: {:?}",
            ours.len(),
            &ours[..ours.len().min(10)]
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    catches_up(&c, "after the broker came back").await;
    assert!(child.0.try_wait().unwrap().is_none(), "the capture goes on:\n{}", stderr_of(dir.path()));
    eprintln!(
        "{} rows committed, {have} in the topic; {lost_by_broker} acknowledged by noida-db before its kill and lost by it; capture {}",
        ids.len(),
        if restarted { "exited and was started again" } else { "recovered by itself" }
    );
}
