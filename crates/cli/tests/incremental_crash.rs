//! The incremental snapshot survives `kill -9`: `tensorcdc capture` (snapshot.mode=no_data,
//! a signal table) is killed at 10 random moments of its incremental snapshot of 200,000
//! rows while a writer inserts, updates and deletes rows of the table, and started again
//! each time. The events of all runs, in order, must describe the table at the end (no row
//! lost, none resurrected), chunks already delivered are not read again (counted), and the
//! last run resumes where the offsets say instead of starting over.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Kill;
use rand::{Rng, SeedableRng};
use tensorcdc_localpg::{LocalPg, Options};
use tokio_postgres::NoTls;

const ROWS: i64 = 200_000;
const CHUNK: usize = 1024;

fn spawn(pg: &LocalPg, dir: &Path, out: &Path) -> Kill {
    Kill(
        Command::new(env!("CARGO_BIN_EXE_tensorcdc"))
            .env("TENSORCDC_STATE_DIR", dir.join("state"))
            .args(["capture", "--postgres", &pg.url("postgres"), "--table-include-list", "public.big", "--slot-name", "incrcrash"])
            .args(["--snapshot-mode", "no_data", "--converter", "json-noschema"])
            .args(["--set", "signal.data.collection=public.debezium_signal"])
            .arg("--sink")
            .arg(format!("file:{}", out.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// The offsets file's incremental progress (`None` when there is none, or no file yet).
fn progress(dir: &Path) -> Option<serde_json::Value> {
    let e = std::fs::read_dir(dir.join("state")).ok()?.flatten().find(|e| e.path().extension().is_some_and(|x| x == "json"))?;
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(e.path()).ok()?).ok()?;
    v.get("incremental").cloned()
}

/// The complete lines of a file as JSON (a line being written when the process died is not).
fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// Applies the events to `state`; counts the incremental reads of each id in `reads`.
fn fold(state: &mut BTreeMap<i64, (i64, String)>, reads: &mut HashMap<i64, u32>, events: &[serde_json::Value]) {
    for e in events {
        let v = &e["value"];
        if v.is_null() {
            continue;
        }
        match v["op"].as_str().unwrap() {
            "d" => {
                state.remove(&v["before"]["id"].as_i64().unwrap());
            }
            op => {
                let a = &v["after"];
                let id = a["id"].as_i64().unwrap();
                if op == "r" {
                    assert_eq!(v["source"]["snapshot"], "incremental");
                    *reads.entry(id).or_default() += 1;
                }
                state.insert(id, (a["v"].as_i64().unwrap(), a["s"].as_str().unwrap().to_string()));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_an_incremental_snapshot_resumes_at_the_next_chunk() {
    let pg = LocalPg::start(Options { no_fsync: true, ..Default::default() }).unwrap();
    let (c, conn) = tokio_postgres::connect(&pg.conninfo("postgres"), NoTls).await.unwrap();
    tokio::spawn(conn);
    c.batch_execute(&format!(
        "CREATE TABLE debezium_signal (id VARCHAR(42) PRIMARY KEY, type VARCHAR(32) NOT NULL, data VARCHAR(2048) NULL); \
         CREATE TABLE big (id BIGINT PRIMARY KEY, v BIGINT NOT NULL, s TEXT NOT NULL); \
         INSERT INTO big SELECT g, g % 1000, 'row ' || g FROM generate_series(1, {ROWS}) g"
    ))
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = |n: usize| dir.path().join(format!("events-{n}.jsonl"));

    // The writer: random inserts, updates and deletes until the end of the test.
    let (stop, mut stop_rx) = tokio::sync::watch::channel(false);
    let url = pg.conninfo("postgres");
    let writer = tokio::spawn(async move {
        let (w, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
        tokio::spawn(conn);
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let (mut next, mut ops) = (ROWS + 1, 0u64);
        while !*stop_rx.borrow_and_update() {
            let id = rng.random_range(1..=ROWS);
            let sql = match rng.random_range(0..4) {
                0 => format!("UPDATE big SET v = v + 1, s = s || 'u' WHERE id = {id}"),
                1 => format!("DELETE FROM big WHERE id = {id}"),
                2 => format!("INSERT INTO big VALUES ({id}, -1, 'again') ON CONFLICT (id) DO UPDATE SET v = -2"),
                _ => {
                    next += 1;
                    format!("INSERT INTO big VALUES ({}, 7, 'new')", next - 1)
                }
            };
            w.batch_execute(&sql).await.unwrap();
            ops += 1;
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        ops
    });

    // The first start creates the slot; the signal comes after it, so the stream carries it.
    let mut child = spawn(&pg, dir.path(), &file(0));
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.query("SELECT 1 FROM pg_replication_slots WHERE slot_name = 'incrcrash'", &[]).await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "capture never created its slot");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.execute(
        "INSERT INTO debezium_signal VALUES ('ad-hoc-1', 'execute-snapshot', '{\"data-collections\": [\"public.big\"], \"type\": \"incremental\"}')",
        &[],
    )
    .await
    .unwrap();

    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    let kills = 10;
    for attempt in 0..kills {
        if attempt > 0 {
            child = spawn(&pg, dir.path(), &file(attempt));
        }
        // Kill after a random number of read events of this run (at most 18,000, so ten runs
        // cannot finish the 200,000 rows: every kill lands inside the snapshot).
        let at = rng.random_range(1..18_000usize);
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let reads = std::fs::read_to_string(file(attempt)).unwrap_or_default().matches("\"snapshot\":\"incremental\"").count();
            if reads >= at {
                break;
            }
            assert!(Instant::now() < deadline, "run {attempt}: {reads} of {at} reads in 90 s");
            assert!(child.0.try_wait().unwrap().is_none(), "run {attempt}: capture exited");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        assert!(progress(dir.path()).is_some(), "run {attempt}: killed inside the snapshot, so the offsets hold its progress");
        eprintln!("run {attempt}: killed after {at}+ reads; progress {}", progress(dir.path()).unwrap());
    }
    // The last run, to the end of the snapshot.
    let last = kills;
    let child = spawn(&pg, dir.path(), &file(last));
    let deadline = Instant::now() + Duration::from_secs(120);
    while progress(dir.path()).is_some() {
        assert!(Instant::now() < deadline, "the last run did not finish the snapshot in 120 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(true).unwrap();
    let ops = writer.await.unwrap();
    c.execute("INSERT INTO big VALUES (-1, 0, 'marker')", &[]).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !lines(&file(last)).iter().any(|e| e["value"]["after"]["id"] == -1) {
        assert!(Instant::now() < deadline, "the marker row did not arrive");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(child);

    let (mut state, mut reads) = (BTreeMap::new(), HashMap::new());
    for n in 0..=last {
        fold(&mut state, &mut reads, &lines(&file(n)));
    }
    let table: BTreeMap<i64, (i64, String)> =
        c.query("SELECT id, v, s FROM big", &[]).await.unwrap().iter().map(|r| (r.get(0), (r.get(1), r.get(2)))).collect();
    let resurrected = state.keys().filter(|k| !table.contains_key(k)).count();
    let missing = table.keys().filter(|k| !state.contains_key(k)).count();
    let wrong = table.iter().filter(|(k, v)| state.get(k).is_some_and(|s| s != *v)).count();
    let twice = reads.values().filter(|n| **n > 1).count();
    let total_reads: u32 = reads.values().sum();
    let chunks: i64 = c.query_one("SELECT count(*) FROM debezium_signal WHERE type = 'snapshot-window-open'", &[]).await.unwrap().get(0);
    eprintln!(
        "{kills} kills; writer {ops} operations; {total_reads} reads of {} ids, {twice} read twice; {chunks} chunk reads (200,000 / {CHUNK} = 196); \
         resurrected {resurrected}, missing {missing}, wrong {wrong}",
        reads.len()
    );
    assert_eq!((resurrected, missing, wrong), (0, 0, 0), "the events of all runs describe the table");
    // A kill can cost the chunk in its window (never delivered) and, when it fell between a
    // chunk's delivery and the offsets write, that chunk: at most one delivered chunk per kill.
    assert!(twice <= kills * CHUNK, "{twice} rows read twice");
    assert!(chunks <= 196 + 1 + 2 * kills as i64, "{chunks} chunk reads: finished chunks were read again");
    let offsets = std::fs::read_dir(dir.path().join("state")).unwrap().flatten().next().unwrap().path();
    assert!(std::fs::read_to_string(offsets).unwrap().contains("last_signal_lsn"), "the signal is recorded as acted on");
}
