//! Crash safety: `tensorcdc capture` killed with SIGKILL while it streams 60,000
//! Fashion-MNIST rows to a durable file, then restarted. Every row arrives at least once;
//! rows delivered twice all come after the LSN the slot had confirmed at the kill.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tensorcdc_change::Lsn;
use tensorcdc_dataset::mnist::{self, Split};
// Kills the capture process if the test fails half-way (no process outlives the test).
use common::Kill;
use tensorcdc_localpg::{LocalPg, Options};
use tokio_postgres::NoTls;

fn spawn_capture(pg: &LocalPg, out: &Path) -> Kill {
    Kill(
        Command::new(env!("CARGO_BIN_EXE_tensorcdc"))
            .env("TENSORCDC_STATE_DIR", out.parent().unwrap().join("state"))
            .args(["capture", "--postgres", &pg.url("postgres"), "--table-include-list", "public.mnist_.*", "--slot-name", "crash"])
            .args(["--converter", "json-noschema", "--set", "status.interval.ms=200"])
            .arg("--sink")
            .arg(format!("file:{}", out.display()))
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

async fn slot_active(c: &tokio_postgres::Client) -> Option<(bool, Lsn)> {
    let rows = c.query("SELECT active, confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'crash'", &[]).await.unwrap();
    rows.first().map(|r| (r.get::<_, bool>(0), r.get::<_, Option<String>>(1).map(|s| s.parse().unwrap()).unwrap_or_default()))
}

/// (id, lsn) of every complete line, and how many complete lines do not parse. A last line
/// without its newline is one the running capture is still writing: not counted either way.
fn read_lines(path: &Path) -> (Vec<(i64, u64)>, usize) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let text = text.rfind('\n').map_or("", |end| &text[..end]);
    let mut out = Vec::new();
    let mut broken = 0;
    for line in text.lines() {
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) => out.push((v["value"]["after"]["id"].as_i64().unwrap(), v["value"]["source"]["lsn"].as_u64().unwrap())),
            Err(_) => broken += 1,
        }
    }
    (out, broken)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_streaming_loses_nothing() {
    let pg = LocalPg::start(Options { no_fsync: true, ..Default::default() }).unwrap();
    let (c, conn) = tokio_postgres::connect(&pg.conninfo("postgres"), NoTls).await.unwrap();
    tokio::spawn(conn);
    c.batch_execute(&tensorcdc_postgres::load::create_table_sql("mnist_train")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events.jsonl");
    let mut child = spawn_capture(&pg, &out);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !matches!(slot_active(&c).await, Some((true, _))) {
        assert!(Instant::now() < deadline, "capture never started streaming");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // 60,000 real rows, 100 per transaction, from another connection.
    let data = mnist::load(Path::new("/usr/share/datasets/fashion-mnist"), Split::Train).unwrap();
    let url = pg.conninfo("postgres");
    let loader = tokio::spawn(async move {
        let (c2, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
        tokio::spawn(conn);
        tensorcdc_postgres::load::load_examples(&c2, "mnist_train", &data, 100).await.unwrap()
    });
    // Kill once about 15 MB of events (some 9,000 rows) are in the file.
    while std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0) < 15_000 * 1_000 {
        assert!(Instant::now() < deadline + Duration::from_secs(60), "capture wrote too little");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!loader.is_finished(), "the kill must come while rows are still being inserted");
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let released = Instant::now() + Duration::from_secs(30);
    let confirmed_at_kill = loop {
        if let Some((false, lsn)) = slot_active(&c).await {
            break lsn;
        }
        assert!(Instant::now() < released, "the killed capture's slot stayed active for 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (before_restart, _) = read_lines(&out);
    assert!(before_restart.len() < 60_000, "the kill happened mid-stream");
    let child = spawn_capture(&pg, &out);
    assert_eq!(loader.await.unwrap(), 60_000);
    let deadline = Instant::now() + Duration::from_secs(180);
    let lines = loop {
        let (lines, broken) = read_lines(&out);
        assert!(broken <= 1, "at most the line cut by the kill is incomplete");
        let distinct: std::collections::HashSet<i64> = lines.iter().map(|l| l.0).collect();
        if distinct.len() == 60_000 {
            break lines;
        }
        assert!(Instant::now() < deadline, "only {} of 60000 rows after the restart", distinct.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    drop(child);
    let mut seen: HashMap<i64, Vec<u64>> = HashMap::new();
    for (id, lsn) in &lines {
        seen.entry(*id).or_default().push(*lsn);
    }
    assert_eq!(seen.len(), 60_000);
    assert!((1..=60_000).all(|id| seen.contains_key(&id)), "no row missing");
    let dups: Vec<(&i64, &Vec<u64>)> = seen.iter().filter(|(_, v)| v.len() > 1).collect();
    for (id, lsns) in &dups {
        assert!(lsns.iter().all(|l| *l > confirmed_at_kill.0), "row {id} delivered twice but at or before the confirmed LSN {confirmed_at_kill}");
    }
    eprintln!("rows before kill: {}, duplicates after restart: {}, confirmed at kill: {confirmed_at_kill}", before_restart.len(), dups.len());
}
