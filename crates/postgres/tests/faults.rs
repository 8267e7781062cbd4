//! Bad input and faults: each is a clear error or a retry, never a panic or a lost row.

mod common;

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use tensorcdc_localpg::{LocalPg, Options};
use tensorcdc_postgres::CaptureError;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_level_not_logical_is_a_clear_error() {
    let pg = start_pg(&[("wal_level", "replica")]);
    let e = run_once(config(&pg, "w")).await.unwrap_err();
    assert!(!e.is_retryable());
    let msg = e.to_string();
    assert!(msg.contains("wal_level = replica") && msg.contains("wal_level = logical"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_a_clear_error() {
    let pg = LocalPg::start(Options { password: Some("right-secret".into()), no_fsync: true, ..Default::default() }).unwrap();
    let mut cfg = config(&pg, "p");
    cfg.password = Some("wrong".into());
    let e = run_once(cfg.clone()).await.unwrap_err();
    assert!(matches!(e, CaptureError::Auth { .. }), "{e:?}");
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("password authentication failed") && e.to_string().contains("postgres"), "{e}");
    // The right password works, over SCRAM on both the SQL and the replication connection
    // (a one-off read needs a table to read: one that matches nothing is an error now).
    client(&pg).await.batch_execute(CREATE).await.unwrap();
    cfg.password = Some("right-secret".into());
    cfg.snapshot_mode = tensorcdc_postgres::SnapshotMode::InitialOnly;
    run_once(cfg).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slot_held_by_another_process_is_a_clear_error() {
    let pg = start_pg(&[]);
    let c = client(&pg).await;
    c.batch_execute(CREATE).await.unwrap();
    // Create the slot (and publication), then let pg_recvlogical hold it.
    let mut cfg = config(&pg, "held");
    cfg.snapshot_mode = tensorcdc_postgres::SnapshotMode::Never;
    let run = spawn(cfg.clone(), identity());
    run.wait_streaming().await;
    run.stop().await;
    let mut other = Command::new(pg.bin_dir().join("pg_recvlogical"))
        .args(["-d", &pg.url("postgres"), "--slot", "held", "--start", "-o", "proto_version=1", "-o", "publication_names=dbz_publication", "-f", "/dev/null"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let pid = loop {
        let r = c.query_one("SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'held'", &[]).await.unwrap();
        if let Some(p) = r.get::<_, Option<i32>>(0) {
            break p;
        }
        assert!(std::time::Instant::now() < deadline, "pg_recvlogical did not take the slot within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Debezium's slot.max.retries x slot.retry.delay.ms, shortened: waited for, then an error.
    (cfg.slot_max_retries, cfg.slot_retry_delay_ms) = (2, 500);
    let t0 = std::time::Instant::now();
    let e = run_once(cfg).await.unwrap_err().to_string();
    assert!(t0.elapsed() >= Duration::from_millis(1000), "waited {:?}", t0.elapsed());
    assert!(e.contains("slot.max.retries 2 x slot.retry.delay.ms 500"), "{e}");
    other.kill().unwrap();
    other.wait().unwrap();
    assert!(e.contains("\"held\" is in use by another process") && e.contains(&format!("PID {pid}")), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_table_is_reported_then_captured_when_created() {
    let pg = start_pg(&[]);
    let c = client(&pg).await;
    let mut cfg = config(&pg, "m");
    cfg.include = tensorcdc_postgres::config::parse_table_list("table.include.list", "public.mnist_missing").unwrap();
    let mut run = spawn(cfg, identity());
    run.wait_streaming().await;
    let warnings = run.stats.lock().unwrap().warnings.clone();
    assert!(warnings.iter().any(|w| w.contains("public.mnist_missing") && w.contains("matches no table")), "{warnings:?}");
    c.batch_execute("CREATE TABLE mnist_missing(id SERIAL PRIMARY KEY, label SMALLINT, pixels BYTEA)").await.unwrap();
    insert_rows(&c, "mnist_missing", 0, 3).await;
    let msgs = run.take(3, 30).await;
    assert_eq!(msgs.iter().map(|m| id_of(m).unwrap()).collect::<Vec<_>>(), vec![1, 2, 3]);
    run.stop().await;
}

/// Connects again once the server is back (30 s at most).
async fn reconnect(pg: &tensorcdc_localpg::LocalPg) -> tokio_postgres::Client {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match tokio_postgres::connect(&pg.conninfo("postgres"), tokio_postgres::NoTls).await {
            Ok((c, conn)) => {
                tokio::spawn(conn);
                return c;
            }
            Err(e) => assert!(tokio::time::Instant::now() < deadline, "Postgres did not come back: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The in-process sink (the channel `run`, `predict --follow` and Python read) through each
/// fault: `pg_ctl restart -m fast`, `-m immediate` and the walsender terminated. After each,
/// every row arrives (at least once) and the slot confirms the server's position again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_sink_delivers_and_confirms_again_after_every_fault() {
    let mut pg = start_pg(&[]);
    let mut c = client(&pg).await;
    c.batch_execute(CREATE).await.unwrap();
    let mut run = spawn(config(&pg, "r"), identity());
    run.wait_streaming().await;
    insert_rows(&c, "mnist_train", 0, 300).await;
    let mut got: Vec<i64> = run.take(300, 30).await.iter().map(|m| id_of(m).unwrap()).collect();
    let mut rows = 300;
    for fault in ["fast", "immediate", "pg_terminate_backend"] {
        match fault {
            "pg_terminate_backend" => {
                c.batch_execute("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 'r' AND active").await.unwrap()
            }
            mode => {
                drop(c);
                pg.restart_mode(mode).unwrap();
            }
        }
        c = reconnect(&pg).await;
        insert_rows(&c, "mnist_train", rows, 100).await;
        rows += 100;
        let target: String = c.query_one("SELECT pg_current_wal_lsn()::text", &[]).await.unwrap().get(0);
        let target: tensorcdc_change::Lsn = target.parse().unwrap();
        // The table's own ids: a crash restart makes the sequence skip values.
        let ids: HashSet<i64> = c.query("SELECT id::int8 FROM mnist_train", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
        assert_eq!(ids.len() as i64, rows);
        // Rows after the last confirmed LSN may come twice; all must come.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !ids.iter().all(|i| got.contains(i)) {
            match tokio::time::timeout_at(deadline, run.rx.recv()).await {
                Ok(Some(m)) => got.push(id_of(&m).unwrap()),
                other => {
                    let ended = if run.handle.is_finished() { format!("{:?}", (&mut run.handle).await) } else { "running".into() };
                    panic!("after {fault}: capture stopped delivering: {} rows, {other:?}, capture: {ended}", got.len())
                }
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let at: Option<String> = c.query_one("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'r'", &[]).await.unwrap().get(0);
            let at: tensorcdc_change::Lsn = at.map(|s| s.parse().unwrap()).unwrap_or_default();
            if at >= target {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "after {fault}: the slot confirmed {at}, the server is at {target} after 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    run.stop().await;
}
