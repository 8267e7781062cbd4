//! Crash safety of the snapshot: `tensorcdc capture` killed with SIGKILL at random points
//! of its snapshot of 60,000 Fashion-MNIST rows, started alternately with plain flags and
//! with a registration file (neither names `offset.storage.file.filename`), then run to
//! the end. Every row must be in the sink: a capture that had not finished its snapshot
//! redoes it, whatever its flags.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use tensorcdc_dataset::mnist::{self, Split};
// Kills the capture process if the test fails half-way (no process outlives the test).
use common::{topic_ids, Kill};
use tensorcdc_localpg::{LocalPg, Options};
use tokio_postgres::NoTls;

fn spawn_capture(pg: &LocalPg, dir: &Path, out: &Path, with_file: bool) -> Kill {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tensorcdc"));
    cmd.env("TENSORCDC_STATE_DIR", dir.join("state")).arg("capture");
    if with_file {
        let reg = serde_json::json!({"name": "crash", "config": {
            "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
            "database.url": pg.url("postgres"),
            "table.include.list": "public.mnist_train",
            "slot.name": "snapcrash",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter.schemas.enable": "false",
        }});
        let path = dir.join("register.json");
        std::fs::write(&path, reg.to_string()).unwrap();
        cmd.arg("--config").arg(path);
    } else {
        cmd.args(["--postgres", &pg.url("postgres"), "--table-include-list", "public.mnist_train", "--slot-name", "snapcrash"]);
        cmd.args(["--converter", "json-noschema"]);
    }
    Kill(cmd.arg("--sink").arg(format!("file:{}", out.display())).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap())
}

/// Distinct ids of complete lines and the number of lines.
fn ids(path: &Path) -> (HashSet<i64>, usize) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut set = HashSet::new();
    let mut n = 0;
    for line in text.lines() {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            set.insert(v["value"]["after"]["id"].as_i64().unwrap());
            n += 1;
        }
    }
    (set, n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_the_snapshot_loses_no_row() {
    let pg = LocalPg::start(Options { no_fsync: true, ..Default::default() }).unwrap();
    let (c, conn) = tokio_postgres::connect(&pg.conninfo("postgres"), NoTls).await.unwrap();
    tokio::spawn(conn);
    c.batch_execute(&tensorcdc_postgres::load::create_table_sql("mnist_train")).await.unwrap();
    let data = mnist::load(Path::new("/usr/share/datasets/fashion-mnist"), Split::Train).unwrap();
    assert_eq!(tensorcdc_postgres::load::load_examples(&c, "mnist_train", &data, 1000).await.unwrap(), 60_000);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut mid_snapshot_kills = 0;
    let mut attempts = 0;
    while mid_snapshot_kills < 10 {
        attempts += 1;
        assert!(attempts <= 40, "only {mid_snapshot_kills} kills landed during a snapshot in 40 attempts");
        // A fresh file per attempt tells how far this attempt's snapshot got.
        let out = dir.path().join(format!("events-{attempts}.jsonl"));
        let mut child = spawn_capture(&pg, dir.path(), &out, attempts % 2 == 0);
        // Kill after a random number of bytes (each row is about 1.1 kB of JSON).
        let at = rng.random_range(1_000..40_000_000u64);
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0) < at {
            assert!(Instant::now() < deadline, "attempt {attempts}: capture wrote less than {at} bytes in 60 s");
            if child.0.try_wait().unwrap().is_some() {
                panic!("attempt {attempts}: capture exited early");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        let (seen, lines) = ids(&out);
        if seen.len() < 60_000 {
            mid_snapshot_kills += 1;
        }
        eprintln!("attempt {attempts}: killed after {lines} rows of the snapshot");
        std::fs::remove_file(&out).unwrap();
    }
    // The last start: plain flags, to the end of its snapshot.
    let out = dir.path().join("events-final.jsonl");
    let child = spawn_capture(&pg, dir.path(), &out, false);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (seen, _) = ids(&out);
        if seen.len() == 60_000 {
            assert!((1..=60_000).all(|id| seen.contains(&id)), "every row present");
            break;
        }
        assert!(Instant::now() < deadline, "only {} of 60000 rows after the restart", seen.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(child);
    // Exactly one slot: each restart dropped the half-done slot rather than adding another.
    let slots: i64 = c.query_one("SELECT count(*) FROM pg_replication_slots", &[]).await.unwrap().get(0);
    assert_eq!(slots, 1);
    eprintln!("{mid_snapshot_kills} kills during the snapshot in {attempts} attempts; the restart delivered every row");
}

/// Counts the records of a topic (sum of high watermarks; 0 while it does not exist) with
/// one client, so polling is quick.
struct Counter(rdkafka::consumer::BaseConsumer);

impl Counter {
    fn new(brokers: &str) -> Self {
        Counter(rdkafka::ClientConfig::new().set("bootstrap.servers", brokers).set("group.id", "count").create().unwrap())
    }

    fn count(&self, topic: &str) -> i64 {
        use rdkafka::consumer::Consumer;
        let Ok(md) = self.0.fetch_metadata(Some(topic), Duration::from_secs(5)) else { return 0 };
        let Some(t) = md.topics().iter().find(|t| t.name() == topic) else { return 0 };
        t.partitions().iter().map(|p| self.0.fetch_watermarks(topic, p.id(), Duration::from_secs(5)).map(|w| w.1).unwrap_or(0)).sum()
    }
}

/// Whether the capture's offsets file records a completed snapshot.
fn snapshot_completed(dir: &Path) -> bool {
    std::fs::read_dir(dir.join("state")).into_iter().flatten().flatten().any(|e| {
        std::fs::read_to_string(e.path()).ok().and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok()).is_some_and(|v| v["snapshot_completed"] == true)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_the_snapshot_to_kafka_loses_no_row() {
    // A real Kafka-protocol broker (noida-db) in its own process survives every kill.
    let broker = tensorcdc_kafka::testing::Noida::start().unwrap();
    let brokers = broker.bootstrap();
    let pg = LocalPg::start(Options { no_fsync: true, ..Default::default() }).unwrap();
    let (c, conn) = tokio_postgres::connect(&pg.conninfo("postgres"), NoTls).await.unwrap();
    tokio::spawn(conn);
    c.batch_execute(&tensorcdc_postgres::load::create_table_sql("mnist_train")).await.unwrap();
    // 10,000 rows: noida-db keeps everything in one JSON file, so the backlog stays small.
    let rows = 10_000;
    let data = mnist::load(Path::new("/usr/share/datasets/fashion-mnist"), Split::Train).unwrap().truncate(rows);
    tensorcdc_postgres::load::load_examples(&c, "mnist_train", &data, 1000).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let topic = "tf.public.mnist_train";
    let spawn = |with_file: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tensorcdc"));
        cmd.env("TENSORCDC_STATE_DIR", dir.path().join("state")).arg("capture");
        if with_file {
            let reg = serde_json::json!({"name": "crash", "config": {
                "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
                "database.url": pg.url("postgres"),
                "table.include.list": "public.mnist_train",
                "slot.name": "kcrash",
                "bootstrap.servers": brokers,
                "value.converter": "org.apache.kafka.connect.json.JsonConverter",
                "value.converter.schemas.enable": "false",
            }});
            let path = dir.path().join("register.json");
            std::fs::write(&path, reg.to_string()).unwrap();
            cmd.arg("--config").arg(path);
        } else {
            cmd.args(["--postgres", &pg.url("postgres"), "--table-include-list", "public.mnist_train", "--slot-name", "kcrash"]);
            cmd.args(["--converter", "json-noschema", "--kafka", &brokers]);
        }
        Kill(cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap())
    };
    let counter = Counter::new(&brokers);
    let topic_count = |_: &str, t: &str| counter.count(t);
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let (mut mid_snapshot_kills, mut attempts) = (0, 0);
    while mid_snapshot_kills < 10 {
        attempts += 1;
        assert!(attempts <= 40, "only {mid_snapshot_kills} kills landed during a snapshot in 40 attempts");
        let before = topic_count(&brokers, topic);
        let at = before + rng.random_range(1..(rows as i64 * 4 / 5));
        let mut child = spawn(attempts % 2 == 0);
        let deadline = Instant::now() + Duration::from_secs(60);
        while topic_count(&brokers, topic) < at && !snapshot_completed(dir.path()) {
            assert!(Instant::now() < deadline, "attempt {attempts}: fewer than {at} records in 60 s");
            assert!(child.0.try_wait().unwrap().is_none(), "attempt {attempts}: capture exited early");
            std::thread::sleep(Duration::from_millis(1));
        }
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        let done = snapshot_completed(dir.path());
        eprintln!("attempt {attempts}: killed at {} records, snapshot {}", topic_count(&brokers, topic) - before, if done { "complete" } else { "incomplete" });
        if done {
            // Too late: start over with a new slot so the next kill can land in a snapshot.
            std::fs::remove_dir_all(dir.path().join("state")).unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.execute("SELECT pg_drop_replication_slot('kcrash')", &[]).await.is_err() {
                assert!(Instant::now() < deadline, "slot kcrash still active");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        } else {
            mid_snapshot_kills += 1;
        }
    }
    let before = topic_count(&brokers, topic);
    let child = spawn(false);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !snapshot_completed(dir.path()) {
        assert!(Instant::now() < deadline, "the last start did not complete its snapshot");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(child);
    let total = topic_count(&brokers, topic);
    drop(counter);
    assert!(total - before >= rows as i64, "the last start produced its whole snapshot");
    let ids = topic_ids(&brokers, topic, total);
    assert_eq!(ids.len(), rows, "every row in the topic");
    assert!((1..=rows as i64).all(|id| ids.contains(&id)));
    eprintln!("{mid_snapshot_kills} kills during the snapshot in {attempts} attempts; {total} records, every row present");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_the_broker_down_stops_within_5_s_and_loses_nothing() {
    let pg = LocalPg::start(Options { no_fsync: true, ..Default::default() }).unwrap();
    let (c, conn) = tokio_postgres::connect(&pg.conninfo("postgres"), NoTls).await.unwrap();
    tokio::spawn(conn);
    c.batch_execute(&tensorcdc_postgres::load::create_table_sql("mnist_train")).await.unwrap();
    let rows = 2000;
    let data = mnist::load(Path::new("/usr/share/datasets/fashion-mnist"), Split::Train).unwrap().truncate(rows);
    tensorcdc_postgres::load::load_examples(&c, "mnist_train", &data, 1000).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // No broker on this port yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let brokers = format!("127.0.0.1:{port}");
    let spawn = || {
        Kill(
            Command::new(env!("CARGO_BIN_EXE_tensorcdc"))
                .env("TENSORCDC_STATE_DIR", dir.path().join("state"))
                .args(["capture", "--postgres", &pg.url("postgres"), "--table-include-list", "public.mnist_train", "--slot-name", "down"])
                .args(["--converter", "json-noschema", "--kafka", &brokers])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let mut child = spawn();
    // Its snapshot is under way (the slot exists), the broker cannot be reached.
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.query("SELECT 1 FROM pg_replication_slots WHERE slot_name = 'down'", &[]).await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "capture never created its slot");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    assert!(Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap().success());
    let stop_deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if child.0.try_wait().unwrap().is_some() {
            break;
        }
        assert!(Instant::now() < stop_deadline, "capture still running 5 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("stopped {:?} after SIGTERM", t.elapsed());
    assert!(!snapshot_completed(dir.path()), "nothing was delivered, so the snapshot is not recorded as done");
    // The broker comes up on that port; the restart delivers every row.
    let broker = tensorcdc_kafka::testing::Noida::start_on(port).unwrap();
    let child = spawn();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !snapshot_completed(dir.path()) {
        assert!(Instant::now() < deadline, "the restart did not complete its snapshot");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(child);
    let total = Counter::new(&broker.bootstrap()).count("tf.public.mnist_train");
    let ids = topic_ids(&broker.bootstrap(), "tf.public.mnist_train", total);
    assert_eq!(ids.len(), rows, "every row in the topic");
}
