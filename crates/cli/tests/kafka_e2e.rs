//! End to end through Kafka: a private Postgres, a Kafka-protocol broker on a loopback port
//! and `tensorcdc` processes that reach it, on Fashion-MNIST rows. Each test runs against
//! both brokers: librdkafka's mock cluster (in this test process) and noida-db 0.2.3 (a
//! separate broker process, reached with SASL PLAIN).

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Kill, Lines};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use tensorcdc_dataset::mnist::{self, Split};
use tensorcdc_dataset::Examples;
use tensorcdc_kafka::testing::Noida;
use tensorcdc_localpg::{LocalPg, Options};
use tokio_postgres::NoTls;

/// The broker a test runs against.
enum Broker {
    Mock(MockCluster<'static, rdkafka::producer::DefaultProducerContext>),
    Noida(Noida),
}

impl Broker {
    fn mock() -> Broker {
        Broker::Mock(MockCluster::new(1).unwrap())
    }

    fn noida() -> Broker {
        Broker::Noida(Noida::start().unwrap())
    }

    fn bootstrap(&self) -> String {
        match self {
            Broker::Mock(m) => m.bootstrap_servers(),
            Broker::Noida(n) => n.bootstrap(),
        }
    }

    /// librdkafka settings every client needs: SASL PLAIN for noida-db.
    fn settings(&self) -> Vec<(&'static str, &'static str)> {
        match self {
            Broker::Mock(_) => vec![],
            Broker::Noida(_) => {
                vec![("security.protocol", "SASL_PLAINTEXT"), ("sasl.mechanism", "PLAIN"), ("sasl.username", "tensorcdc"), ("sasl.password", "e2e")]
            }
        }
    }

    /// The settings as `-X k=v` arguments of the learning commands.
    fn x_args(&self) -> Vec<String> {
        self.settings().iter().flat_map(|(k, v)| ["-X".to_string(), format!("{k}={v}")]).collect()
    }

    /// The settings as capture's `--set kafka.k=v` arguments.
    fn set_args(&self) -> Vec<String> {
        self.settings().iter().flat_map(|(k, v)| ["--set".to_string(), format!("kafka.{k}={v}")]).collect()
    }

    async fn create_topic(&self, topic: &str, partitions: i32) {
        match self {
            Broker::Mock(m) => m.create_topic(topic, partitions, 1).unwrap(),
            Broker::Noida(n) => {
                let mut cfg = rdkafka::ClientConfig::new();
                cfg.set("bootstrap.servers", n.bootstrap());
                for (k, v) in self.settings() {
                    cfg.set(k, v);
                }
                let admin: rdkafka::admin::AdminClient<_> = cfg.create().unwrap();
                let t = rdkafka::admin::NewTopic::new(topic, partitions, rdkafka::admin::TopicReplication::Fixed(1));
                for r in admin.create_topics([&t], &rdkafka::admin::AdminOptions::new()).await.unwrap() {
                    r.unwrap();
                }
            }
        }
    }
}

const FASHION: &str = "/usr/share/datasets/fashion-mnist";

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tensorcdc"))
}

fn check(out: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{what} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

fn capture(pg: &LocalPg, broker: &Broker, slot: &str, extra: &[&str]) -> Kill {
    Kill(
        bin()
            // The offsets file of this test run, not the user's state directory.
            .env("TENSORCDC_STATE_DIR", std::env::temp_dir().join(format!("tensorcdc-e2e-state-{}", std::process::id())))
            .args([
                "capture",
                "--postgres",
                &pg.url("postgres"),
                "--kafka",
                &broker.bootstrap(),
                "--table-include-list",
                "public.mnist_.*",
                "--slot-name",
                slot,
            ])
            .args(broker.set_args())
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
async fn csv_through_kafka_train_evaluate_predict_mock() {
    csv_through_kafka_train_evaluate_predict(Broker::mock()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_through_kafka_train_evaluate_predict_noida_sasl() {
    csv_through_kafka_train_evaluate_predict(Broker::noida()).await;
}

/// The blog's path (unwrap + MnistToCsv): bounded train, evaluate while the test rows are
/// inserted, a second group re-reading, live predictions for a table created later.
async fn csv_through_kafka_train_evaluate_predict(broker: Broker) {
    let train = mnist::load(Path::new(FASHION), Split::Train).unwrap().truncate(1200);
    let test = mnist::load(Path::new(FASHION), Split::Test).unwrap().truncate(400);
    let (pg, c) = pg_with(&train).await;
    let brokers = broker.bootstrap();
    let x = broker.x_args();
    // Topics made up front; 4 partitions keep each under the mock cluster's ~5 MiB.
    // Against noida-db, mnist_manual does not exist when the follower below starts (it
    // creates it so its group forms at once). The mock cluster has no CreateTopics API
    // (a group whose topic appears later waits its emulated 3 s initial rebalance delay),
    // so there the topic is made here.
    for t in ["tf.public.mnist_train", "tf.public.mnist_test"] {
        broker.create_topic(t, 4).await;
    }
    if matches!(broker, Broker::Mock(_)) {
        broker.create_topic("tf.public.mnist_manual", 1).await;
    }
    let _cap = capture(&pg, &broker, "e2e", &["--transforms", "unwrap,mnist-csv", "--converter", "string"]);
    wait_count(&brokers, "tf.public.mnist_train", 1200, 60);

    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    let out = check(
        bin()
            .args(["train", "--kafka", &brokers, "--topic", "tf.public.mnist_train", "--epochs", "5", "--out", model.to_str().unwrap()])
            .args(&x)
            .output()
            .unwrap(),
        "train",
    );
    assert!(out.contains("training on 1200 examples (1200 records read, 0 skipped)"), "{out}");

    // Evaluate on the empty test topic while the test rows are inserted.
    let eval = |group: &str| {
        bin()
            .args(["evaluate", "--kafka", &brokers, "--topic", "tf.public.mnist_test", "--group", group, "--stream-timeout", "4000"])
            .args(["--model", model.to_str().unwrap()])
            .args(&x)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut first = eval("mnistcg");
    let lines = Lines::of(first.stdout.take().unwrap());
    // Insert 8 chunks of 50 rows; before each next chunk, evaluate reports the rows so far.
    let mut seen = Vec::new();
    for k in 0..8 {
        let chunk = Examples::new(test.pixels[k * 50 * 784..(k + 1) * 50 * 784].to_vec(), test.labels[k * 50..(k + 1) * 50].to_vec()).unwrap();
        tensorcdc_postgres::load::load_examples(&c, "mnist_test", &chunk, 50).await.unwrap();
        let want = format!("rows: {} ", 50 * (k + 1));
        loop {
            let l = lines.next(60, "evaluate's progress").expect("evaluate ended early");
            seen.push(l.clone());
            if l.starts_with(&want) {
                break;
            }
        }
    }
    let rest = lines.rest(60, "evaluate's end");
    assert!(first.wait().unwrap().success());
    let last = rest.last().unwrap();
    assert!(last.starts_with("final: 400 examples"), "{rest:?}");
    let acc: f64 = last.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(acc > 0.6, "{last}");
    assert!(seen.len() >= 8, "{seen:?}");
    // A second group reads the same rows again.
    let out = check(eval("mnistcg2").wait_with_output().unwrap(), "evaluate, second group");
    assert!(out.lines().last().unwrap().starts_with("final: 400 examples"), "{out}");

    // Live predictions for a table (and topic) created after the follower started.
    let mut follow = bin()
        .args(["predict", "--follow", "--kafka", &brokers, "--topic", "tf.public.mnist_manual", "--group", "predict", "--max", "5"])
        .args(["--model", model.to_str().unwrap(), "--predictions-table", "mnist_predictions", "--predictions-db", &pg.url("postgres")])
        .args(&x)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = Lines::of(follow.stdout.take().unwrap());
    // The follower creates the missing topic and its group forms before any row exists.
    let err = Lines::of(follow.stderr.take().unwrap());
    while !err.next(30, "the follower's group").expect("predict --follow ended").contains("group assigned partitions of tf.public.mnist_manual") {}
    let manual = mnist::load(Path::new(FASHION), Split::Test).unwrap().truncate(5);
    tensorcdc_postgres::load::load_examples(&c, "mnist_manual", &manual, 1).await.unwrap();
    let lines: Vec<serde_json::Value> = out.rest(60, "predictions").iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(follow.wait().unwrap().success());
    assert_eq!(lines.len(), 5);
    // Keyed by the source row's primary key (the record key is the blog's label); the topic
    // may have several partitions, so the order of rows is not checked.
    let mut keys: Vec<usize> = lines.iter().map(|p| p["key"].as_str().unwrap().parse().unwrap()).collect();
    for (p, k) in lines.iter().zip(&keys) {
        assert_eq!(p["label"], manual.labels[k - 1].to_string(), "{p}");
        assert!(p["position"].as_str().unwrap().starts_with("tf.public.mnist_manual/"), "{p}");
    }
    keys.sort();
    assert_eq!(keys, [1, 2, 3, 4, 5]);
    // The first row (against noida-db in a topic that did not exist when the follower
    // started) arrives within a second of its commit; the others faster.
    let latency: Vec<f64> = lines.iter().map(|p| p["latency_ms"].as_f64().unwrap()).collect();
    assert!(latency[0] < 1000.0 && latency[1..].iter().all(|l| *l < 500.0), "{latency:?}");
    let n: i64 = c.query_one("SELECT count(*) FROM mnist_predictions", &[]).await.unwrap().get(0);
    assert_eq!(n, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debezium_json_with_and_without_schema_gives_bytes() {
    let train = mnist::load(Path::new(FASHION), Split::Train).unwrap().truncate(300);
    let (pg, _c) = pg_with(&train).await;
    let dir = tempfile::tempdir().unwrap();
    for (b, broker) in [Broker::mock(), Broker::noida()].iter().enumerate() {
        let brokers = broker.bootstrap();
        for (i, conv) in ["json", "json-noschema"].iter().enumerate() {
            let prefix = format!("p{b}{i}");
            let topic = format!("{prefix}.public.mnist_train");
            broker.create_topic(&topic, 2).await;
            let cap = capture(&pg, broker, &format!("j{b}{i}"), &["--converter", conv, "--topic-prefix", &prefix]);
            wait_count(&brokers, &topic, 300, 60);
            drop(cap);
            let model = dir.path().join(format!("m{b}{i}"));
            let out = check(
                bin()
                    .args(["train", "--kafka", &brokers, "--topic", &topic, "--epochs", "1", "--format", "debezium", "--out", model.to_str().unwrap()])
                    .args(broker.x_args())
                    .output()
                    .unwrap(),
                "train on Debezium JSON",
            );
            assert!(out.contains("training on 300 examples (300 records read, 0 skipped)"), "{conv}: {out}");
        }
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
async fn kill_9_and_broker_down_lose_nothing_mock() {
    let Run { broker, pg, c, rows, ids, capture } = kill_9_while_producing_loses_nothing(Broker::mock()).await;
    let Broker::Mock(mock) = &broker else { unreachable!() };
    let brokers = broker.bootstrap();
    let topic = "tf.public.mnist_train";

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
    wait_count(&brokers, topic, ids as i64 + 1000, 120);
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
    drop(capture);
    drop(pg);
}

/// The broker outage against noida-db (a process stopped and restarted on its port) is in
/// `snapshot_crash.rs`; here, kill -9 of capture while it produces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_producing_loses_nothing_noida_sasl() {
    kill_9_while_producing_loses_nothing(Broker::noida()).await;
}

/// Kill -9 of capture while it produces, then a restart: every row reaches the topic at
/// least once. Returns what the outage part of the mock test goes on with.
async fn kill_9_while_producing_loses_nothing(broker: Broker) -> Run {
    let rows = mnist::load(Path::new(FASHION), Split::Train).unwrap().truncate(3000);
    let empty = Examples::default();
    let (pg, c) = pg_with(&empty).await;
    let brokers = broker.bootstrap();
    let topic = "tf.public.mnist_train";
    broker.create_topic(topic, 4).await;
    let args = ["--converter", "json-noschema", "--set", "status.interval.ms=200"];

    let mut cap = capture(&pg, &broker, "k", &args);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !confirmed(&c, "k").await.0 {
        assert!(Instant::now() < deadline, "capture's slot not active after 60 s");
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
        assert!(Instant::now() < deadline, "fewer than 300 records after 60 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cap.0.kill().unwrap();
    cap.0.wait().unwrap();
    let at_kill = topic_count(&brokers, topic);
    assert_eq!(load.await.unwrap(), 2000);
    let cap = capture(&pg, &broker, "k", &args);
    wait_count(&brokers, topic, 2000, 60);
    let ids = ids_in(&brokers, topic);
    let distinct: std::collections::HashSet<i64> = ids.iter().copied().collect();
    assert_eq!(distinct, (1..=2000).collect(), "every row reached the topic (killed after {at_kill} records)");
    // The restarted capture keeps running for the caller (killed when its handle drops).
    Run { broker, pg, c, rows, ids: ids.len(), capture: cap }
}

/// What the kill -9 part hands to the outage part.
struct Run {
    broker: Broker,
    pg: LocalPg,
    c: tokio_postgres::Client,
    rows: Examples,
    ids: usize,
    capture: Kill,
}

/// A table with 100 inserts, 100 updates and 50 deletes trains on the 50 rows it holds,
/// through Kafka (Debezium JSON: an update replaces the row's example, a delete removes it)
/// as in-process (the snapshot), against noida-db.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_and_deletes_give_the_table_through_kafka_and_in_process() {
    let rows = mnist::load(Path::new(FASHION), Split::Train).unwrap().truncate(100);
    let (pg, c) = pg_with(&Examples::default()).await;
    let broker = Broker::noida();
    let brokers = broker.bootstrap();
    let topic = "tf.public.mnist_train";
    let _cap = capture(&pg, &broker, "upd", &["--converter", "json"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !confirmed(&c, "upd").await.0 {
        assert!(Instant::now() < deadline, "capture's slot not active after 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tensorcdc_postgres::load::load_examples(&c, "mnist_train", &rows, 10).await.unwrap();
    c.batch_execute("UPDATE mnist_train SET label = (label + 1) % 10; DELETE FROM mnist_train WHERE id % 2 = 0").await.unwrap();
    // 100 creates, 100 updates, 50 deletes and their 50 tombstones.
    wait_count(&brokers, topic, 300, 60);
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m");
    let out = check(
        bin()
            .args(["train", "--kafka", &brokers, "--topic", topic, "--format", "debezium", "--epochs", "1", "--out", model.to_str().unwrap()])
            .output()
            .unwrap(),
        "train through Kafka",
    );
    assert!(out.contains("training on 50 examples (300 records read, 0 skipped)"), "{out}");
    let out = check(
        bin()
            .env("TENSORCDC_STATE_DIR", dir.path())
            .args(["train", "--source", &pg.url("postgres"), "--table", "mnist_train", "--epochs", "1", "--out", model.to_str().unwrap()])
            .output()
            .unwrap(),
        "train in-process",
    );
    assert!(out.contains("training on 50 examples"), "{out}");
}
