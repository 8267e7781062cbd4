//! End to end through Kafka: a private Postgres, librdkafka's mock cluster (a real
//! Kafka-protocol peer on a loopback port, started in this test process) and `tensorcdc`
//! processes that reach it over loopback, on Fashion-MNIST rows.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use tensorcdc_dataset::mnist::{self, Split};
use tensorcdc_dataset::Examples;
use tensorcdc_localpg::{LocalPg, Options};
use tokio_postgres::NoTls;

const FASHION: &str = "/usr/share/datasets/fashion-mnist";

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tensorcdc"))
}

fn check(out: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{what} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn capture(pg: &LocalPg, brokers: &str, slot: &str, extra: &[&str]) -> Kill {
    Kill(
        bin()
            // The offsets file of this test run, not the user's state directory.
            .env("TENSORCDC_STATE_DIR", std::env::temp_dir().join(format!("tensorcdc-e2e-state-{}", std::process::id())))
            .args(["capture", "--postgres", &pg.url("postgres"), "--kafka", brokers, "--table-include-list", "public.mnist_.*", "--slot-name", slot])
            .args(extra)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Records in a topic (sum of high watermarks).
fn topic_count(brokers: &str, topic: &str) -> i64 {
    let c: BaseConsumer = rdkafka::ClientConfig::new().set("bootstrap.servers", brokers).set("group.id", "count").create().unwrap();
    let Ok(md) = c.fetch_metadata(Some(topic), Duration::from_secs(5)) else { return 0 };
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else { return 0 };
    t.partitions().iter().map(|p| c.fetch_watermarks(topic, p.id(), Duration::from_secs(5)).map(|w| w.1).unwrap_or(0)).sum()
}

fn wait_count(brokers: &str, topic: &str, n: i64, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let have = topic_count(brokers, topic);
        if have >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{topic}: {have} of {n} records after {secs}s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn pg_with(rows: &Examples) -> (LocalPg, tokio_postgres::Client) {
    let pg = LocalPg::start(Options { no_fsync: true, ..Default::default() }).unwrap();
    let (c, conn) = tokio_postgres::connect(&pg.conninfo("postgres"), NoTls).await.unwrap();
    tokio::spawn(conn);
    tensorcdc_postgres::load::load_examples(&c, "mnist_train", rows, 500).await.unwrap();
    (pg, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_through_kafka_train_evaluate_predict() {
    let train = mnist::load(Path::new(FASHION), Split::Train).unwrap().truncate(1200);
    let test = mnist::load(Path::new(FASHION), Split::Test).unwrap().truncate(400);
    let (pg, c) = pg_with(&train).await;
    let mock = MockCluster::new(1).unwrap();
    let brokers = mock.bootstrap_servers();
    // Topics as the mock cluster wants them; 4 partitions keep each under its ~5 MiB.
    // mnist_manual has one, so its predictions come in insertion order.
    for (t, p) in [("tf.public.mnist_train", 4), ("tf.public.mnist_test", 4), ("tf.public.mnist_manual", 1)] {
        mock.create_topic(t, p, 1).unwrap();
    }
    let _cap = capture(&pg, &brokers, "e2e", &["--transforms", "unwrap,mnist-csv", "--converter", "string"]);
    wait_count(&brokers, "tf.public.mnist_train", 1200, 60);

    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    let out = check(
        bin().args(["train", "--kafka", &brokers, "--topic", "tf.public.mnist_train", "--epochs", "5", "--out", model.to_str().unwrap()]).output().unwrap(),
        "train",
    );
    assert!(out.contains("training on 1200 examples (1200 records read, 0 skipped)"), "{out}");

    // Evaluate on the empty test topic while the test rows are inserted.
    let eval = |group: &str| {
        bin()
            .args(["evaluate", "--kafka", &brokers, "--topic", "tf.public.mnist_test", "--group", group, "--stream-timeout", "4000"])
            .args(["--model", model.to_str().unwrap()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut first = eval("mnistcg");
    let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
    // Insert 8 chunks of 50 rows; before each next chunk, evaluate reports the rows so far.
    let mut seen = Vec::new();
    for k in 0..8 {
        let chunk = Examples::new(test.pixels[k * 50 * 784..(k + 1) * 50 * 784].to_vec(), test.labels[k * 50..(k + 1) * 50].to_vec()).unwrap();
        tensorcdc_postgres::load::load_examples(&c, "mnist_test", &chunk, 50).await.unwrap();
        let want = format!("rows: {} ", 50 * (k + 1));
        loop {
            let l = lines.next().expect("evaluate ended early").unwrap();
            seen.push(l.clone());
            if l.starts_with(&want) {
                break;
            }
        }
    }
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    assert!(first.wait().unwrap().success());
    let last = rest.last().unwrap();
    assert!(last.starts_with("final: 400 examples"), "{rest:?}");
    let acc: f64 = last.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(acc > 0.6, "{last}");
    assert!(seen.len() >= 8, "{seen:?}");
    // A second group reads the same rows again.
    let out = check(eval("mnistcg2").wait_with_output().unwrap(), "evaluate, second group");
    assert!(out.lines().last().unwrap().starts_with("final: 400 examples"), "{out}");

    // Live predictions for a table created now.
    let mut follow = bin()
        .args(["predict", "--follow", "--kafka", &brokers, "--topic", "tf.public.mnist_manual", "--group", "predict", "--max", "5"])
        .args(["--model", model.to_str().unwrap(), "--predictions-table", "mnist_predictions", "--predictions-db", &pg.url("postgres")])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let manual = mnist::load(Path::new(FASHION), Split::Test).unwrap().truncate(5);
    tensorcdc_postgres::load::load_examples(&c, "mnist_manual", &manual, 1).await.unwrap();
    let lines: Vec<serde_json::Value> = BufReader::new(stdout).lines().map(|l| serde_json::from_str(&l.unwrap()).unwrap()).collect();
    assert!(follow.wait().unwrap().success());
    assert_eq!(lines.len(), 5);
    for (i, p) in lines.iter().enumerate() {
        assert_eq!(p["label"], manual.labels[i] as i64, "{p}");
        assert!(p["digit"].as_u64().unwrap() < 10 && p["latency_ms"].as_f64().unwrap() >= 0.0, "{p}");
        assert!(p["position"].as_str().unwrap().starts_with("tf.public.mnist_manual/"), "{p}");
    }
    let n: i64 = c.query_one("SELECT count(*) FROM mnist_predictions", &[]).await.unwrap().get(0);
    assert_eq!(n, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debezium_json_with_and_without_schema_gives_bytes() {
    let train = mnist::load(Path::new(FASHION), Split::Train).unwrap().truncate(300);
    let (pg, _c) = pg_with(&train).await;
    let mock = MockCluster::new(1).unwrap();
    let brokers = mock.bootstrap_servers();
    mock.create_topic("tf.public.mnist_train", 2, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (i, conv) in ["json", "json-noschema"].iter().enumerate() {
        let prefix = format!("p{i}");
        let topic = format!("{prefix}.public.mnist_train");
        mock.create_topic(&topic, 2, 1).unwrap();
        let cap = capture(&pg, &brokers, &format!("j{i}"), &["--converter", conv, "--topic-prefix", &prefix]);
        wait_count(&brokers, &topic, 300, 60);
        drop(cap);
        let model = dir.path().join(format!("m{i}"));
        let out = check(
            bin().args(["train", "--kafka", &brokers, "--topic", &topic, "--epochs", "1", "--format", "debezium", "--out", model.to_str().unwrap()]).output().unwrap(),
            "train on Debezium JSON",
        );
        assert!(out.contains("training on 300 examples (300 records read, 0 skipped)"), "{conv}: {out}");
    }
}

/// Row ids in a topic of Debezium JSON (without schema).
fn ids_in(brokers: &str, topic: &str) -> Vec<i64> {
    let mut ids = Vec::new();
    tensorcdc_kafka::read_bounded(brokers, topic, None, 0, false, &[], Duration::from_secs(30), |r| {
        if let Some(v) = r.value {
            let j: serde_json::Value = serde_json::from_slice(&v).unwrap();
            ids.push(j["after"]["id"].as_i64().unwrap());
        }
        Ok(())
    })
    .unwrap();
    ids
}

async fn confirmed(c: &tokio_postgres::Client, slot: &str) -> (bool, tensorcdc_change::Lsn) {
    let rows = c.query("SELECT active, confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", &[&slot]).await.unwrap();
    match rows.first() {
        Some(r) => (r.get(0), r.get::<_, Option<String>>(1).map(|s| s.parse().unwrap()).unwrap_or_default()),
        None => (false, Default::default()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_broker_down_lose_nothing() {
    let rows = mnist::load(Path::new(FASHION), Split::Train).unwrap().truncate(3000);
    let empty = Examples::default();
    let (pg, c) = pg_with(&empty).await;
    let mock = MockCluster::new(1).unwrap();
    let brokers = mock.bootstrap_servers();
    let topic = "tf.public.mnist_train";
    mock.create_topic(topic, 4, 1).unwrap();
    let args = ["--converter", "json-noschema", "--set", "status.interval.ms=200"];

    // Kill -9 while producing, then restart: every row reaches the topic at least once.
    let mut cap = capture(&pg, &brokers, "k", &args);
    while !confirmed(&c, "k").await.0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first = Examples::new(rows.pixels[..2000 * 784].to_vec(), rows.labels[..2000].to_vec()).unwrap();
    let load = {
        let url = pg.conninfo("postgres");
        tokio::spawn(async move {
            let (c2, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
            tokio::spawn(conn);
            tensorcdc_postgres::load::load_examples(&c2, "mnist_train", &first, 20).await.unwrap()
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while topic_count(&brokers, topic) < 300 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cap.0.kill().unwrap();
    cap.0.wait().unwrap();
    let at_kill = topic_count(&brokers, topic);
    assert_eq!(load.await.unwrap(), 2000);
    let _cap = capture(&pg, &brokers, "k", &args);
    wait_count(&brokers, topic, 2000, 60);
    let ids = ids_in(&brokers, topic);
    let distinct: std::collections::HashSet<i64> = ids.iter().copied().collect();
    assert_eq!(distinct, (1..=2000).collect(), "every row reached the topic (killed after {at_kill} records)");

    // The broker goes down: capture waits, confirms nothing undelivered, then resumes.
    let (_, before) = confirmed(&c, "k").await;
    mock.broker_down(1).unwrap();
    let second = Examples::new(rows.pixels[2000 * 784..].to_vec(), rows.labels[2000..].to_vec()).unwrap();
    tensorcdc_postgres::load::load_examples(&c, "mnist_train", &second, 100).await.unwrap();
    let inserted_end: tensorcdc_change::Lsn = c.query_one("SELECT pg_current_wal_lsn()::text", &[]).await.unwrap().get::<_, String>(0).parse().unwrap();
    // Observe for two seconds: the slot must not confirm the new rows while no broker can take them.
    let watch_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < watch_until {
        let (_, lsn) = confirmed(&c, "k").await;
        assert!(lsn < inserted_end, "confirmed {lsn} while the broker was down (rows end at {inserted_end}, before {before})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    mock.broker_up(1).unwrap();
    wait_count(&brokers, topic, ids.len() as i64 + 1000, 120);
    // Read until every row is there (a reader right after the outage can see stale metadata).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ids = ids_in(&brokers, topic);
        let distinct: std::collections::HashSet<i64> = ids.iter().copied().collect();
        if distinct.len() == 3000 {
            assert_eq!(distinct, (1..=3000).collect(), "nothing lost across the broker outage");
            break;
        }
        assert!(Instant::now() < deadline, "only {} of 3000 rows in the topic after the outage", distinct.len());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while confirmed(&c, "k").await.1 < inserted_end {
        assert!(Instant::now() < deadline, "capture confirmed the rows once delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
