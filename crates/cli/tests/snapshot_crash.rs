//! Crash safety of the snapshot: `tensorcdc capture` killed with SIGKILL at random points
//! of its snapshot of 60,000 Fashion-MNIST rows, started alternately with plain flags and
//! with a registration file (neither names `offset.storage.file.filename`), then run to
//! the end. Every row must be in the sink: a capture that had not finished its snapshot
//! redoes it, whatever its flags.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use tensorcdc_dataset::mnist::{self, Split};
use tensorcdc_localpg::{LocalPg, Options};
use tokio_postgres::NoTls;

/// Kills the capture process if the test fails half-way (no process outlives the test).
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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
