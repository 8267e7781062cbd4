//! Scale-out through Kafka: `tensorcdc capture` writes breast_cancer's change events to a
//! 2-partition topic on a Kafka-protocol broker on loopback (noida-db 0.2.3, a broker process;
//! librdkafka's mock cluster, in this test process); two `tensorcdc run`
//! processes in one consumer group share the partitions: each learns from the labelled rows
//! of its partition and predicts its unlabelled rows, so every row is predicted by one
//! process. When one is killed (SIGKILL), the other takes its partition over once the group's
//! session times out, and predicts the rows that arrive after: every row keeps exactly one
//! current prediction. And a run that joins a topic already holding the table trains its
//! first version on all of it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::mocking::MockCluster;
use tensorcdc_kafka::testing::Noida;
use tensorcdc_localpg::LocalPg;

mod common;
use common::{cancer_table, Kill, Lines};

/// The broker a test runs against.
enum Broker {
    Mock(MockCluster<'static, rdkafka::producer::DefaultProducerContext>),
    Noida(Noida),
}

impl Broker {
    fn bootstrap(&self) -> String {
        match self {
            Broker::Mock(m) => m.bootstrap_servers(),
            Broker::Noida(n) => n.bootstrap(),
        }
    }

    /// SASL PLAIN for noida-db.
    fn settings(&self) -> &'static [(&'static str, &'static str)] {
        match self {
            Broker::Mock(_) => &[],
            Broker::Noida(_) => {
                &[("security.protocol", "SASL_PLAINTEXT"), ("sasl.mechanism", "PLAIN"), ("sasl.username", "tensorcdc"), ("sasl.password", "e2e")]
            }
        }
    }
}
const TOPIC: &str = "run.public.cancer";
const GROUP: &str = "scale";
const PREDICTIONS: &str = "cancer.predictions";

fn client_config(n: &Broker) -> rdkafka::ClientConfig {
    let mut cfg = rdkafka::ClientConfig::new();
    cfg.set("bootstrap.servers", n.bootstrap());
    for (k, v) in n.settings() {
        cfg.set(*k, *v);
    }
    cfg
}

/// Reads a run's stderr until its group assignment has `n` partitions; returns them.
fn wait_assignment(name: &str, err: &Lines, n: usize, deadline: Instant) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "run {name} never had {n} partitions; it said:\n{}", seen.join("\n"));
        if let Some(l) = err.try_next(500) {
            seen.push(l.clone());
            if let Some(list) = l.strip_prefix("group assignment: ") {
                let parts: Vec<String> = list.split(", ").filter(|p| *p != "none").map(String::from).collect();
                if parts.len() == n {
                    return parts;
                }
            }
        }
    }
}

fn run(pg: &LocalPg, n: &Broker, out: &std::path::Path) -> (Kill, Lines, Lines) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tensorcdc"));
    c.args(["run", "--source", &pg.url("postgres"), "--table", "cancer", "--label", "target", "--layers", "16", "--initial-epochs", "20"])
        .args(["--retrain-every", "1000000", "--retrain-secs", "1e9", "--metrics-addr", "off", "--kafka", &n.bootstrap(), "--topic", TOPIC, "--group", GROUP])
        .args(["-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=1000", "--predictions-topic", PREDICTIONS])
        .args(n.settings().iter().flat_map(|(k, v)| ["-X".to_string(), format!("{k}={v}")]))
        .arg("--out")
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let lines = Lines::of(child.stdout.take().unwrap());
    let err = Lines::of(child.stderr.take().unwrap());
    (Kill(child), lines, err)
}

async fn wait_until(c: &tokio_postgres::Client, sql: &str, want: i64, secs: u64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let n: i64 = c.query_one(sql, &[]).await.unwrap().get(0);
        if n >= want {
            return n;
        }
        assert!(Instant::now() < deadline, "{sql}: {n}, expected {want} within {secs} s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How the first process ends.
#[derive(PartialEq)]
enum Stop {
    /// SIGKILL: it never leaves the group; the broker expires it after the session timeout.
    Kill,
    /// SIGTERM: it stops, commits and leaves the group.
    Term,
}

/// One test, the brokers one after the other: four processes and a Postgres at once are
/// what two cores can take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_in_one_group_share_the_partitions_and_one_takes_over_from_the_other() {
    // librdkafka's mock cluster: the first process is killed (SIGKILL) and never leaves the
    // group; the broker expires it after the session timeout.
    let m = MockCluster::new(1).unwrap();
    m.create_topic(TOPIC, 2, 1).unwrap();
    m.create_topic(PREDICTIONS, 2, 1).unwrap();
    scale_out(Broker::Mock(m), Stop::Kill).await;
    // noida-db 0.2.3 does not expire a member that stops heartbeating (it never rebalanced
    // within 60 s of a SIGKILL), so against it the first process is stopped (SIGTERM) and
    // leaves the group.
    let noida = Broker::Noida(Noida::start().unwrap());
    let admin: rdkafka::admin::AdminClient<_> = client_config(&noida).create().unwrap();
    for t in [TOPIC, PREDICTIONS] {
        let t = rdkafka::admin::NewTopic::new(t, 2, rdkafka::admin::TopicReplication::Fixed(1));
        for r in admin.create_topics([&t], &rdkafka::admin::AdminOptions::new()).await.unwrap() {
            r.unwrap();
        }
    }
    scale_out(noida, Stop::Term).await;
}

/// A topic that already holds the table's change events: the first version trains on all of
/// them (everything the partitions held when the group assigned them), as a capture's first
/// version trains on the whole snapshot, not on whatever the first fetch returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_version_from_kafka_trains_on_what_the_topic_held() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic(TOPIC, 2, 1).unwrap();
    let m = Broker::Mock(mock);
    let dir = tempfile::tempdir().unwrap();
    let (pg, c, header, rows) = cancer_table(dir.path(), "int").await;
    let values: Vec<String> = rows.iter().enumerate().map(|(i, r)| format!("({},{})", i + 1, r.join(","))).collect();
    c.batch_execute(&format!("INSERT INTO cancer(id,{}) VALUES {}", header.join(","), values.join(","))).await.unwrap();
    let _capture = capture(&pg, &m, dir.path());
    let consumer: rdkafka::consumer::BaseConsumer = client_config(&m).set("group.id", "count").create().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let held: i64 = (0..2).map(|p| consumer.fetch_watermarks(TOPIC, p, Duration::from_secs(5)).map(|w| w.1).unwrap_or(0)).sum();
        if held >= rows.len() as i64 {
            break;
        }
        assert!(Instant::now() < deadline, "capture wrote {held} of {} rows to {TOPIC} in 60 s", rows.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_run, lines, err) = run(&pg, &m, &dir.path().join("a"));
    let l = wait_version_1("a", &lines, &err);
    assert!(l.starts_with(&format!("version 1: {} examples seen", rows.len())), "version 1 trained on every row the topic held: {l}");
}

/// A run's `version 1:` line, within 60 s; otherwise fails with the run's stderr.
fn wait_version_1(name: &str, lines: &Lines, err: &Lines) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if Instant::now() > deadline {
            let said: Vec<String> = std::iter::from_fn(|| err.try_next(100)).collect();
            panic!("run {name}: no version 1 within 60 s; its stderr:\n{}", said.join("\n"));
        }
        let Some(l) = lines.try_next(500) else { continue };
        if l.starts_with("version 1:") {
            return l;
        }
    }
}

/// `tensorcdc capture` of the cancer table to `TOPIC` on the broker.
fn capture(pg: &LocalPg, broker: &Broker, dir: &std::path::Path) -> Kill {
    Kill(
        Command::new(env!("CARGO_BIN_EXE_tensorcdc"))
            .env("TENSORCDC_STATE_DIR", dir.join("state"))
            .args([
                "capture",
                "--postgres",
                &pg.url("postgres"),
                "--kafka",
                &broker.bootstrap(),
                "--table-include-list",
                "public.cancer",
                "--topic-prefix",
                "run",
            ])
            .args(broker.settings().iter().flat_map(|(k, v)| ["--set".to_string(), format!("kafka.{k}={v}")]))
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

async fn scale_out(noida: Broker, stop: Stop) {
    let dir = tempfile::tempdir().unwrap();
    let (pg, c, header, rows) = cancer_table(dir.path(), "int").await;
    let insert = |from: usize, to: usize, labelled: bool| common::cancer_insert(&header, &rows, from, to, labelled);
    let _capture = capture(&pg, &noida, dir.path());
    let (mut a, a_lines, a_err) = run(&pg, &noida, &dir.path().join("a"));
    let (b, b_lines, b_err) = run(&pg, &noida, &dir.path().join("b"));
    // Both in the group, one partition each, before any row is written, so each reads its
    // partition from the start.
    let deadline = Instant::now() + Duration::from_secs(60);
    let pa = wait_assignment("a", &a_err, 1, deadline);
    let pb = wait_assignment("b", &b_err, 1, deadline);
    assert_ne!(pa, pb, "the partitions are shared");
    // Labelled rows: each process learns from its partition's share.
    c.batch_execute(&insert(0, 400, true)).await.unwrap();
    for (name, lines, err) in [("a", &a_lines, &a_err), ("b", &b_lines, &b_err)] {
        let l = wait_version_1(name, lines, err);
        assert!(l.contains("serving"), "{name}: {l}");
    }
    // Unlabelled rows: each predicted once, by the process that owns its partition.
    c.batch_execute(&insert(400, 500, false)).await.unwrap();
    wait_until(&c, "SELECT count(*) FROM cancer_predictions", 100, 60).await;
    let workers: Vec<(String, i64)> = c
        .query("SELECT worker, count(*) FROM cancer_predictions GROUP BY worker ORDER BY worker", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(workers.len(), 2, "both processes predicted their share: {workers:?}");
    assert!(workers.iter().all(|(_, n)| *n >= 20), "{workers:?}");
    // One dies (or stops); the other takes over its partition once the session times out (or
    // the first has left the group).
    let a_pid = format!("pid {}", a.0.id());
    match stop {
        Stop::Kill => a.0.kill().unwrap(),
        Stop::Term => assert!(Command::new("kill").arg(a.0.id().to_string()).status().unwrap().success()),
    }
    assert!(a.0.wait().unwrap().code().is_none_or(|c| c == 0), "the stopped run failed");
    let killed = Instant::now();
    c.batch_execute(&insert(500, 600, false)).await.unwrap();
    let both = wait_assignment("b", &b_err, 2, killed + Duration::from_secs(60));
    eprintln!("the survivor holds {both:?} {:?} after the kill (session timeout 6 s)", killed.elapsed());
    wait_until(&c, "SELECT count(*) FROM cancer_predictions WHERE row_key::int > 500", 100, 60).await;
    eprintln!("the survivor predicted all 100 new rows {:?} after the kill", killed.elapsed());
    let by_dead: i64 = c.query_one("SELECT count(*) FROM cancer_predictions WHERE row_key::int > 500 AND worker = $1", &[&a_pid]).await.unwrap().get(0);
    assert_eq!(by_dead, 0, "rows after the kill are predicted by the survivor");
    // Every unlabelled row has exactly one prediction, and nothing else has one.
    let missing: i64 =
        c.query_one("SELECT count(*) FROM cancer WHERE target IS NULL AND id::text NOT IN (SELECT row_key FROM cancer_predictions)", &[]).await.unwrap().get(0);
    assert_eq!(missing, 0);
    let total: i64 = c.query_one("SELECT count(*) FROM cancer_predictions", &[]).await.unwrap().get(0);
    assert_eq!(total, 200, "one current prediction per unlabelled row");
    // The same predictions produced to a topic, keyed by row key.
    let consumer: rdkafka::consumer::BaseConsumer = client_config(&noida).set("group.id", "count").create().unwrap();
    let produced: i64 = (0..2).map(|p| consumer.fetch_watermarks(PREDICTIONS, p, Duration::from_secs(5)).map(|w| w.1).unwrap_or(0)).sum::<i64>();
    assert!(produced >= 200, "{produced} predictions produced to {PREDICTIONS}");
    // A deleted row: its prediction goes from the table, and the topic gets a tombstone.
    c.batch_execute("DELETE FROM cancer WHERE id = 550").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.query_one("SELECT count(*) FROM cancer_predictions WHERE row_key = '550'", &[]).await.unwrap().get::<_, i64>(0) > 0 {
        assert!(Instant::now() < deadline, "row 550's prediction was not deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..2 {
        tpl.add_partition_offset(PREDICTIONS, p, rdkafka::Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "no tombstone for row 550 in {PREDICTIONS}");
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            use rdkafka::Message;
            if m.key() == Some(b"550".as_slice()) && m.payload().is_none() {
                break;
            }
        }
    }
    drop(b);
}
