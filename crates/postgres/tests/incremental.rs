//! Incremental snapshots (Debezium's signals and watermarks) against a real Postgres, with a
//! writer inserting, updating and deleting rows of the table while it is read in chunks.
//! The expectation is the table itself at the end: every key's last event is its row, and
//! no deleted row comes back.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use rand::{Rng, SeedableRng};
use tensorcdc_change::{Message, Op, Payload, Snapshot};
use tensorcdc_postgres::SnapshotMode;
use tokio_postgres::Client;

const SIGNAL: &str = "CREATE TABLE debezium_signal (id VARCHAR(42) PRIMARY KEY, type VARCHAR(32) NOT NULL, data VARCHAR(2048) NULL)";

fn signal_config(pg: &tensorcdc_localpg::LocalPg, slot: &str, include: &str) -> tensorcdc_postgres::CaptureConfig {
    let mut cfg = config(pg, slot);
    cfg.include = tensorcdc_postgres::config::parse_table_list("table.include.list", include).unwrap();
    cfg.snapshot_mode = SnapshotMode::Never;
    cfg.signals.set("signal.data.collection", "public.debezium_signal").unwrap();
    cfg
}

async fn signal(c: &Client, id: &str, kind: &str, tables: &[&str]) {
    let data = serde_json::json!({"data-collections": tables, "type": "incremental"}).to_string();
    c.execute("INSERT INTO debezium_signal VALUES ($1, $2, $3)", &[&id, &kind, &data]).await.unwrap();
}

/// The rows of `t` by id: (v, s).
async fn table_rows(c: &Client, t: &str) -> BTreeMap<i64, (i32, String)> {
    c.query(&format!("SELECT id, v, s FROM {t}"), &[]).await.unwrap().iter().map(|r| (r.get(0), (r.get(1), r.get(2)))).collect()
}

/// Folds events into the state they describe; returns the number of incremental reads.
fn fold(state: &mut BTreeMap<i64, (i32, String)>, msgs: &[Message]) -> usize {
    let mut reads = 0;
    for m in msgs {
        let Payload::Envelope(e) = &m.payload else {
            continue;
        };
        match e.op {
            Op::Delete => {
                state.remove(&e.before.as_ref().unwrap().get("id").unwrap().as_i64().unwrap());
            }
            Op::Create | Op::Update | Op::Read => {
                if e.op == Op::Read {
                    assert_eq!(e.source.snapshot, Snapshot::Incremental, "a read event of an incremental snapshot is marked so");
                    reads += 1;
                }
                let a = e.after.as_ref().unwrap();
                let v = match a.get("v").unwrap() {
                    tensorcdc_change::Value::Int32(v) => *v,
                    o => panic!("v is {o:?}"),
                };
                let s = match a.get("s").unwrap() {
                    tensorcdc_change::Value::String(s) => s.clone(),
                    o => panic!("s is {o:?}"),
                };
                state.insert(a.get("id").unwrap().as_i64().unwrap(), (v, s));
            }
            Op::Truncate => state.clear(),
        }
    }
    reads
}

/// Random inserts, updates and deletes of `t` (keys 1..=max and above), until told to stop.
fn writer(url: String, t: &'static str, max: i64, seed: u64) -> (tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<u64>) {
    let (stop, mut rx) = tokio::sync::watch::channel(false);
    let h = tokio::spawn(async move {
        let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut next = max + 1;
        let mut ops = 0u64;
        while !*rx.borrow_and_update() {
            let mut sql = String::from("BEGIN;");
            for _ in 0..rng.random_range(1..5) {
                let id = rng.random_range(1..=max);
                match rng.random_range(0..4) {
                    0 => sql.push_str(&format!("UPDATE {t} SET v = v + 1, s = s || 'u' WHERE id = {id};")),
                    1 => sql.push_str(&format!("DELETE FROM {t} WHERE id = {id};")),
                    2 => sql.push_str(&format!("INSERT INTO {t} VALUES ({id}, -1, 'again') ON CONFLICT (id) DO UPDATE SET v = -2;")),
                    _ => {
                        sql.push_str(&format!("INSERT INTO {t} VALUES ({next}, 7, 'new');"));
                        next += 1;
                    }
                }
                ops += 1;
            }
            sql.push_str("COMMIT;");
            c.batch_execute(&sql).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        ops
    });
    (stop, h)
}

/// Receives until the capture reports its incremental snapshot done and a marker row written
/// after that has arrived (everything committed before it has then arrived too).
async fn drain_until_done(run: &mut Running, c: &Client, t: &str, marker: i64, secs: u64) -> Vec<Message> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut marker_sent = false;
    loop {
        if !marker_sent {
            let s = run.stats.lock().unwrap().clone();
            if s.incremental_chunks > 0 && s.incremental_table.is_none() {
                c.execute(&format!("INSERT INTO {t} VALUES ({marker}, 0, 'marker')"), &[]).await.unwrap();
                marker_sent = true;
            }
        }
        match tokio::time::timeout_at(deadline, run.rx.recv()).await {
            Ok(Some(m)) => {
                let is_marker = id_of(&m) == Some(marker);
                out.push(m);
                if is_marker {
                    return out;
                }
            }
            Ok(None) => panic!("capture ended: {:?}", (&mut run.handle).await),
            Err(_) => {
                let s = run.stats.lock().unwrap().clone();
                panic!(
                    "after {secs} s: {} messages, {} chunks, {} incremental rows, table {:?}",
                    out.len(),
                    s.incremental_chunks,
                    s.incremental_rows,
                    s.incremental_table
                )
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_snapshot_of_200000_rows_under_a_writer_equals_the_table() {
    let pg = start_pg(&[]);
    let c = client(&pg).await;
    c.batch_execute(SIGNAL).await.unwrap();
    c.batch_execute(
        "CREATE TABLE big (id BIGINT PRIMARY KEY, v INT NOT NULL, s TEXT NOT NULL); \
                     INSERT INTO big SELECT g, g % 1000, 'row ' || g FROM generate_series(1, 200000) g",
    )
    .await
    .unwrap();
    let mut run = spawn(signal_config(&pg, "incr", "public.big"), identity());
    run.wait_streaming().await;
    let (stop, w) = writer(pg.conninfo("postgres"), "big", 200_000, 3);
    signal(&c, "ad-hoc-1", "execute-snapshot", &["public.big"]).await;
    let msgs = drain_until_done(&mut run, &c, "big", -1, 240).await;
    stop.send(true).unwrap();
    let ops = w.await.unwrap();
    // The writer's last transactions, then a second marker.
    c.execute("INSERT INTO big VALUES (-2, 0, 'marker')", &[]).await.unwrap();
    let mut rest = Vec::new();
    while rest.last().and_then(id_of) != Some(-2) {
        rest.extend(run.take(1, 30).await);
    }
    let stats = run.stop().await;
    let mut state = BTreeMap::new();
    let reads = fold(&mut state, &msgs) + fold(&mut state, &rest);
    let table = table_rows(&c, "big").await;
    let resurrected = state.keys().filter(|k| !table.contains_key(k)).count();
    let missing = table.keys().filter(|k| !state.contains_key(k)).count();
    let wrong = table.iter().filter(|(k, v)| state.get(k).is_some_and(|s| s != *v)).count();
    eprintln!(
        "{reads} incremental reads in {} chunks; writer: {ops} operations; table {} rows; resurrected {resurrected}, missing {missing}, wrong {wrong}",
        stats.incremental_chunks,
        table.len()
    );
    assert_eq!((resurrected, missing, wrong), (0, 0, 0), "the events describe the table");
    assert!(ops > 100, "the writer ran during the snapshot ({ops} operations)");
    assert!(reads <= 200_000, "no row read twice ({reads} reads)");
    // Rows the writer deleted or changed inside a window were dropped from their chunk.
    assert!(reads >= 200_000 - ops as usize * 2, "{reads} reads");
    assert_eq!(stats.incremental_rows as usize, reads);
    // 1024-row chunks of at most 200,000 rows (fewer where the writer deleted).
    assert!((180..=196).contains(&stats.incremental_chunks), "{} chunks", stats.incremental_chunks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_added_later_is_snapshotted_while_the_stream_goes_on_and_stop_snapshot_stops() {
    let pg = start_pg(&[]);
    let c = client(&pg).await;
    c.batch_execute(SIGNAL).await.unwrap();
    let mut cfg = signal_config(&pg, "later", "public.late.*");
    cfg.signals.set("incremental.snapshot.chunk.size", "100").unwrap();
    let mut run = spawn(cfg, identity());
    run.wait_streaming().await;
    // Created after the capture started; rows committed before the signal.
    c.batch_execute(
        "CREATE TABLE late (id BIGINT PRIMARY KEY, v INT NOT NULL, s TEXT NOT NULL); \
                     INSERT INTO late SELECT g, g, 'x' FROM generate_series(1, 1000) g",
    )
    .await
    .unwrap();
    let creates = run.take(1000, 30).await;
    assert!(creates.iter().all(|m| matches!(&m.payload, Payload::Envelope(e) if e.op == Op::Create)));
    signal(&c, "later-1", "execute-snapshot", &["public.late"]).await;
    // The stream goes on during the snapshot: a change made now arrives too.
    c.execute("UPDATE late SET v = -5 WHERE id = 500", &[]).await.unwrap();
    let msgs = drain_until_done(&mut run, &c, "late", -1, 60).await;
    let mut state = BTreeMap::new();
    fold(&mut state, &creates);
    let reads = fold(&mut state, &msgs);
    assert!((999..=1000).contains(&reads), "{reads} reads of 1000 rows (the updated one may be left out)");
    assert_eq!(state.len(), 1001);
    assert_eq!(state[&500].0, -5, "the streamed update is the last word on id 500");

    // stop-snapshot: a 100,000-row table in 100-row chunks, stopped after its first reads.
    c.batch_execute(
        "CREATE TABLE late_big (id BIGINT PRIMARY KEY, v INT NOT NULL, s TEXT NOT NULL); \
                     INSERT INTO late_big SELECT g, g, 'y' FROM generate_series(1, 100000) g",
    )
    .await
    .unwrap();
    let _ = run.take(100_000, 60).await;
    signal(&c, "later-2", "execute-snapshot", &["public.late_big"]).await;
    let mut got = 0;
    while got < 300 {
        for m in run.take(1, 30).await {
            if matches!(&m.payload, Payload::Envelope(e) if e.op == Op::Read) {
                got += 1;
            }
        }
    }
    signal(&c, "later-3", "stop-snapshot", &["public.late_big"]).await;
    c.execute("INSERT INTO late_big VALUES (-1, 0, 'marker')", &[]).await.unwrap();
    let mut rest = Vec::new();
    while rest.last().and_then(id_of) != Some(-1) {
        rest.extend(run.take(1, 30).await);
    }
    let reads_after_stop = rest.iter().filter(|m| matches!(&m.payload, Payload::Envelope(e) if e.op == Op::Read)).count();
    assert!(got + reads_after_stop < 100_000 / 2, "stop-snapshot stopped it: {} reads", got + reads_after_stop);

    // A filter that cannot run skips its table with a warning; the capture goes on.
    let data =
        serde_json::json!({"data-collections": ["public.late"], "additional-conditions": [{"data-collection": "public.late", "filter": "no_such_column = 1"}]})
            .to_string();
    c.execute("INSERT INTO debezium_signal VALUES ('later-4', 'execute-snapshot', $1)", &[&data]).await.unwrap();
    c.execute("INSERT INTO late_big VALUES (-2, 0, 'marker')", &[]).await.unwrap();
    let mut rest = Vec::new();
    while rest.last().and_then(id_of) != Some(-2) {
        rest.extend(run.take(1, 30).await);
    }
    assert!(!run.handle.is_finished(), "the capture goes on after a bad filter");
    assert!(rest.iter().all(|m| !matches!(&m.payload, Payload::Envelope(e) if e.op == Op::Read)), "nothing read under a bad filter");
    let stats = run.stop().await;
    assert_eq!(stats.incremental_table, None);
}
