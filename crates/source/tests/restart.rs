//! A capture that reconnects in the middle of a large transaction sends it again from its
//! start (the slot was not confirmed past it). The stream flags the batch that begins the new
//! session (`Stream::take_restarted`), so a caller gathering whole transactions drops the part
//! it had and counts each change once. A private Postgres; the walsender is ended with
//! `pg_terminate_backend` while the old session's messages wait in the channel.

use std::time::{Duration, Instant};

use tensorcdc_dataset::features::Change;
use tensorcdc_localpg::{LocalPg, Options};
use tensorcdc_source::{SourceConfig, Stream};

const ROWS: i64 = 20_000;

fn key(c: &Change) -> Option<i64> {
    match c {
        Change::Upsert(r) => r.key.as_deref().and_then(|k| k.parse().ok()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_mid_transaction_is_flagged_where_the_transaction_starts_again() {
    let dir = tempfile::tempdir().unwrap();
    let pg = LocalPg::start(Options { no_fsync: true, ..Default::default() }).unwrap();
    let (c, conn) = tokio_postgres::connect(&pg.conninfo("postgres"), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    c.batch_execute("CREATE TABLE t(id bigint PRIMARY KEY, v text)").await.unwrap();
    let cfg = SourceConfig {
        source: Some(pg.url("postgres")),
        table: Some("t".into()),
        stream_timeout_ms: Some(-1),
        slot: Some("restart_test".into()),
        offset_file: Some(dir.path().join("offsets.json")),
        ..Default::default()
    };
    let mut stream = Stream::open(&cfg, "t", -1).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !stream.streaming() {
        assert!(Instant::now() < deadline, "the capture did not start streaming in 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // One transaction of 20,000 rows of 1 kB: far more than the channel and the sockets hold.
    c.batch_execute(&format!("INSERT INTO t SELECT g, repeat('x', 1000) FROM generate_series(1, {ROWS}) g")).await.unwrap();
    // The first rows, in order; the capture then waits on the full channel.
    let mut first = Vec::new();
    while first.len() < 10 {
        assert!(Instant::now() < deadline, "no rows of the transaction in 60 s");
        first.extend(stream.next_changes(10 - first.len()).await.unwrap().unwrap().iter().filter_map(|i| key(&i.change)));
    }
    assert_eq!(first, (1..=10).collect::<Vec<_>>());
    let ended: i64 = c
        .query_one("SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'walsender') x", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(ended, 1, "one walsender ended");
    // Read on: the rest of the old session, then the new one, flagged, from the first row.
    let (mut before, mut after, mut flags) = (10usize, Vec::new(), 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "no end of the transaction from the new session in 60 s ({before} rows before it, {} after)", after.len());
        let batch = stream.next_changes(256).await.unwrap().unwrap();
        if stream.take_restarted() {
            flags += 1;
            assert!(after.is_empty(), "flagged twice");
        }
        let done = batch.iter().any(|i| i.ack_lsn.is_some()) && flags > 0;
        for it in batch {
            match (flags, key(&it.change)) {
                (0, Some(_)) => before += 1,
                (_, Some(k)) => after.push(k),
                _ => {}
            }
        }
        if done {
            break;
        }
    }
    assert!(before < ROWS as usize, "the old session delivered part of the transaction ({before} rows), not all of it");
    assert_eq!(flags, 1);
    assert_eq!(after, (1..=ROWS).collect::<Vec<_>>(), "the new session sends the whole transaction again, from its first row");
    stream.close().await.unwrap();
}
