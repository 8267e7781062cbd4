//! `tensorcdc run` whose first snapshot is interrupted by a reconnect (the server ends the
//! capture's connection in the middle of it): each labelled row is counted once by version 1
//! (its "examples seen" is the table's labelled row count, written out by the test's own
//! INSERT), with the initial snapshot (read again whole) and with `--signal-table` (an
//! incremental one, which goes on from the last chunk delivered: chunk reads counted).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{wait_line, Kill, Lines};
use tensorcdc_localpg::{LocalPg, Options};
use tokio_postgres::NoTls;

const ROWS: i64 = 100_000;

async fn setup() -> (LocalPg, tokio_postgres::Client) {
    let pg = LocalPg::start(Options { no_fsync: true, ..Default::default() }).unwrap();
    let (c, conn) = tokio_postgres::connect(&pg.conninfo("postgres"), NoTls).await.unwrap();
    tokio::spawn(conn);
    c.batch_execute(&format!(
        "CREATE TABLE syn (id SERIAL PRIMARY KEY, a FLOAT8 NOT NULL, b FLOAT8 NOT NULL, target INT); \
         INSERT INTO syn(a, b, target) SELECT (g % 97) / 97.0, (g % 89) / 89.0, ((g % 97) / 97.0 + (g % 89) / 89.0 > 1)::int FROM generate_series(1, {ROWS}) g"
    ))
    .await
    .unwrap();
    (pg, c)
}

fn run(pg: &LocalPg, dir: &std::path::Path, extra: &[&str]) -> (Kill, Lines, Lines) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tensorcdc"))
        .args(["run", "--source", &pg.url("postgres"), "--table", "syn", "--label", "target", "--layers", "8", "--initial-epochs", "1"])
        .args(["--retrain-every", "100000000", "--retrain-secs", "3600", "--metrics-addr", "off"])
        .args(extra)
        .arg("--out")
        .arg(dir.join("versions"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (out, err) = (Lines::of(child.stdout.take().unwrap()), Lines::of(child.stderr.take().unwrap()));
    (Kill(child), out, err)
}

/// Terminates the backend running `like` (a query of the capture) as soon as one runs.
async fn terminate(c: &tokio_postgres::Client, like: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n: i64 = c
            .query_one(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND query LIKE $1 AND state = 'active') t",
                &[&like],
            )
            .await
            .unwrap()
            .get(0);
        if n > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: no such backend in 60 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn examples_seen(v1: &str) -> i64 {
    v1.strip_prefix("version 1: ").and_then(|s| s.split(' ').next()).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{v1}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_initial_snapshot_read_again_after_a_reconnect_counts_each_row_once() {
    let (pg, c) = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let (_child, out, err) = run(&pg, dir.path(), &[]);
    // The snapshot's COPY, ended by the server: the capture reconnects and reads the table again.
    terminate(&c, "COPY (SELECT%syn%", "the snapshot's COPY").await;
    let v1 = wait_line(&out, "version 1:", 180);
    let said: Vec<String> = std::iter::from_fn(|| err.try_next(100)).collect();
    assert!(said.iter().any(|l| l.contains("retrying")), "the reconnect is said: {said:?}");
    assert_eq!(examples_seen(&v1), ROWS, "{v1}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_first_snapshot_goes_on_after_a_reconnect_and_counts_each_row_once() {
    let (pg, c) = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let (_child, out, err) = run(&pg, dir.path(), &["--signal-table", "public.tensorcdc_signal"]);
    // Twenty chunks in, the walsender is ended.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let chunks: i64 = c.query_one("SELECT count(*) FROM tensorcdc_signal WHERE type = 'snapshot-window-open'", &[]).await.map(|r| r.get(0)).unwrap_or(0);
        if chunks >= 20 {
            break;
        }
        assert!(Instant::now() < deadline, "{chunks} chunks in 60 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    c.batch_execute("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 'tensorcdc_run_syn' AND active").await.unwrap();
    let v1 = wait_line(&out, "version 1:", 180);
    let said: Vec<String> = std::iter::from_fn(|| err.try_next(100)).collect();
    assert!(said.iter().any(|l| l.contains("streaming again")), "the reconnect happened and is said: {said:?}");
    assert_eq!(examples_seen(&v1), ROWS, "{v1}");
    // 100,000 rows in 1,024-row chunks are 98 chunks, and one empty read ends the table; the
    // reconnect costs the chunk in its window and the ones delivered but not yet confirmed
    // (run confirms what it has applied every few hundred milliseconds), never all 20.
    let chunks: i64 = c.query_one("SELECT count(*) FROM tensorcdc_signal WHERE type = 'snapshot-window-open'", &[]).await.unwrap().get(0);
    eprintln!("{chunks} chunk reads for 98 chunks; {v1}");
    assert!(chunks < 99 + 20, "finished chunks were read again: {chunks} chunk reads");
}
