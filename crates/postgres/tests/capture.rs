//! Capture against a real private Postgres: snapshot and stream hand-off, every kind of
//! change, large and aborted transactions, tables created later, and faults.

mod common;

use std::collections::HashSet;

use common::*;
use tensorcdc_change::{Key, Op, Payload, Snapshot, Value};

fn envelope(m: &tensorcdc_change::Message) -> &tensorcdc_change::ChangeEvent {
    match &m.payload {
        Payload::Envelope(e) => e,
        p => panic!("expected an envelope, got {p:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_then_stream_exactly_once_in_commit_order() {
    let pg = start_pg(&[]);
    let c = client(&pg).await;
    c.batch_execute(CREATE).await.unwrap();
    insert_rows(&c, "mnist_train", 0, 2000).await;
    // Inserts keep running while capture creates its slot and snapshots.
    let inserter = {
        let c2 = client(&pg).await;
        tokio::spawn(async move {
            insert_rows(&c2, "mnist_train", 2000, 1500).await;
        })
    };
    let mut run = spawn(config(&pg, "s1"), identity());
    inserter.await.unwrap();
    // Consume while capture runs: the channel is bounded, a slow consumer holds capture back.
    let mut msgs = run.take(3500, 120).await;
    run.wait_streaming().await;
    insert_rows(&c, "mnist_train", 3500, 500).await;
    msgs.extend(run.take(500, 60).await);
    let ids: Vec<i64> = msgs.iter().map(|m| id_of(m).unwrap()).collect();
    let unique: HashSet<i64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), 4000, "every row exactly once");
    assert_eq!(unique, (1..=4000).collect::<HashSet<_>>());
    let snap: Vec<&tensorcdc_change::Message> = msgs.iter().filter(|m| envelope(m).op == Op::Read).collect();
    let streamed: Vec<i64> = msgs.iter().filter(|m| envelope(m).op == Op::Create).map(|m| id_of(m).unwrap()).collect();
    assert!(snap.len() >= 2000, "the 2000 rows present before start are in the snapshot");
    assert_eq!(snap.len() + streamed.len(), 4000);
    assert_eq!(envelope(snap.last().unwrap()).source.snapshot, Snapshot::Last);
    // Debezium 3's markers: `first`, then `true` up to the last (one table).
    assert_eq!(envelope(snap[0]).source.snapshot, Snapshot::First);
    assert!(snap[1..snap.len() - 1].iter().all(|m| envelope(m).source.snapshot == Snapshot::True));
    // Streamed rows come in commit order (one inserter, so ascending ids), after the snapshot.
    assert!(streamed.windows(2).all(|w| w[0] < w[1]), "commit order");
    let first_stream = msgs.iter().position(|m| envelope(m).op == Op::Create).unwrap();
    assert!(msgs[..first_stream].iter().all(|m| envelope(m).op == Op::Read));
    // Values survive: pixels of row 1234 are what was inserted (ids start at 1 for i = 0).
    let m = msgs.iter().find(|m| id_of(m) == Some(1234)).unwrap();
    assert_eq!(pixels_of(m).unwrap(), pixels(1233));
    let e = envelope(m);
    assert_eq!(e.after.as_ref().unwrap().get("label"), Some(&Value::Int16((1233 % 10) as i16)));
    assert_eq!(m.topic, "tf.public.mnist_train");
    assert_eq!(m.key, Key::Row(tensorcdc_change::Row::new(e.key.as_ref().unwrap().fields.clone(), vec![Value::Int32(1234)])));
    let stats = run.stop().await;
    assert_eq!(stats.snapshot_rows as usize, snap.len());
    // The slot was acknowledged past the last streamed transaction.
    let row = c.query_one("SELECT confirmed_flush_lsn::text, pg_current_wal_lsn()::text FROM pg_replication_slots WHERE slot_name = 's1'", &[]).await.unwrap();
    let confirmed: tensorcdc_change::Lsn = row.get::<_, String>(0).parse().unwrap();
    assert!(confirmed.0 > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_deletes_truncate_and_replica_identity() {
    let pg = start_pg(&[]);
    let c = client(&pg).await;
    c.batch_execute(CREATE).await.unwrap();
    // Truncates are skipped by default, as Debezium's `skipped.operations=t`: ask for them.
    let mut run = spawn(tensorcdc_postgres::CaptureConfig { skipped_ops: vec![], ..config(&pg, "s2") }, identity());
    run.wait_streaming().await;
    insert_rows(&c, "mnist_train", 0, 2).await;
    c.batch_execute("UPDATE mnist_train SET label = 9 WHERE id = 1").await.unwrap();
    c.batch_execute("ALTER TABLE mnist_train REPLICA IDENTITY FULL; UPDATE mnist_train SET label = 8 WHERE id = 1").await.unwrap();
    c.batch_execute("DELETE FROM mnist_train WHERE id = 2").await.unwrap();
    c.batch_execute("TRUNCATE mnist_train").await.unwrap();
    let msgs = run.take(7, 30).await;
    let ops: Vec<Option<Op>> = msgs
        .iter()
        .map(|m| match &m.payload {
            Payload::Envelope(e) => Some(e.op),
            _ => None,
        })
        .collect();
    assert_eq!(ops, vec![Some(Op::Create), Some(Op::Create), Some(Op::Update), Some(Op::Update), Some(Op::Delete), None, Some(Op::Truncate)]);
    // DEFAULT identity: no before; FULL: the whole old row.
    let u1 = envelope(&msgs[2]);
    assert!(u1.before.is_none());
    assert_eq!(u1.after.as_ref().unwrap().get("label"), Some(&Value::Int16(9)));
    let u2 = envelope(&msgs[3]);
    assert_eq!(u2.before.as_ref().unwrap().get("label"), Some(&Value::Int16(9)));
    assert_eq!(u2.before.as_ref().unwrap().get("pixels"), Some(&Value::Bytes(pixels(0))));
    assert_eq!(u2.after.as_ref().unwrap().get("label"), Some(&Value::Int16(8)));
    // Delete (identity FULL now): before is the row, then a tombstone with the same key.
    let d = envelope(&msgs[4]);
    assert!(d.after.is_none());
    assert_eq!(d.before.as_ref().unwrap().get("id"), Some(&Value::Int32(2)));
    assert_eq!(msgs[5].payload, Payload::Tombstone);
    assert_eq!(msgs[5].key, msgs[4].key);
    assert_ne!(msgs[5].key, Key::None);
    assert_eq!(msgs[6].key, Key::None);
    assert_eq!(msgs[6].topic, "tf.public.mnist_train");
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_and_aborted_transactions() {
    // 64kB of decoding memory: a 2,000-row transaction is streamed while in progress.
    let pg = start_pg(&[("logical_decoding_work_mem", "64")]);
    let c = client(&pg).await;
    c.batch_execute(CREATE).await.unwrap();
    let mut run = spawn(config(&pg, "s3"), identity());
    run.wait_streaming().await;
    // Aborted large transaction: nothing of it may arrive.
    c.batch_execute("BEGIN").await.unwrap();
    insert_rows(&c, "mnist_train", 0, 1500).await;
    c.batch_execute("ROLLBACK").await.unwrap();
    // Committed large transaction with an aborted subtransaction in the middle.
    c.batch_execute("BEGIN").await.unwrap();
    insert_rows(&c, "mnist_train", 0, 1000).await;
    c.batch_execute("SAVEPOINT sp").await.unwrap();
    insert_rows(&c, "mnist_train", 1000, 700).await;
    c.batch_execute("ROLLBACK TO SAVEPOINT sp").await.unwrap();
    insert_rows(&c, "mnist_train", 1700, 1000).await;
    c.batch_execute("COMMIT").await.unwrap();
    // A marker transaction after it.
    c.batch_execute("INSERT INTO mnist_train(label) VALUES (7)").await.unwrap();
    let msgs = run.take(2001, 60).await;
    let labels: Vec<i64> = msgs.iter().map(|m| envelope(m).after.as_ref().unwrap().get("label").unwrap().as_i64().unwrap()).collect();
    // The rolled-back rows (1500 first, 700 in the savepoint) never arrive; the marker is last.
    let ids: Vec<i64> = msgs.iter().map(|m| id_of(m).unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "in order");
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 2001);
    assert_eq!(*labels.last().unwrap(), 7);
    // Only the last message of each transaction carries its acknowledgement LSN.
    assert_eq!(msgs.iter().filter(|m| m.ack_lsn.is_some()).count(), 2);
    assert!(msgs[1999].ack_lsn.is_some() && msgs[2000].ack_lsn.is_some());
    assert!(msgs[1999].ack_lsn < msgs[2000].ack_lsn);
    let tx = envelope(&msgs[0]).source.tx_id;
    assert!(tx.is_some() && msgs[..2000].iter().all(|m| envelope(m).source.tx_id == tx));
    let stats = run.stop().await;
    assert!(stats.streamed_transactions >= 1, "the large transaction was streamed while in progress: {stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn later_tables_null_pixels_and_excluded_tables() {
    let pg = start_pg(&[]);
    let c = client(&pg).await;
    c.batch_execute(CREATE).await.unwrap();
    c.batch_execute("CREATE TABLE other_table(id SERIAL PRIMARY KEY, x INT)").await.unwrap();
    let mut run = spawn(config(&pg, "s4"), identity());
    run.wait_streaming().await;
    c.batch_execute("INSERT INTO other_table(x) VALUES (1)").await.unwrap();
    c.batch_execute("CREATE TABLE mnist_manual(id SERIAL NOT NULL PRIMARY KEY, label SMALLINT, pixels BYTEA)").await.unwrap();
    insert_rows(&c, "mnist_manual", 0, 5).await;
    c.batch_execute("INSERT INTO mnist_train(label, pixels) VALUES (3, NULL)").await.unwrap();
    c.batch_execute("INSERT INTO other_table(x) VALUES (2)").await.unwrap();
    let msgs = run.take(6, 30).await;
    assert!(msgs[..5].iter().all(|m| m.topic == "tf.public.mnist_manual"));
    assert_eq!(msgs[..5].iter().map(|m| id_of(m).unwrap()).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    assert_eq!(pixels_of(&msgs[0]).unwrap(), pixels(0));
    let e = envelope(&msgs[5]);
    assert_eq!(msgs[5].topic, "tf.public.mnist_train");
    assert_eq!(e.after.as_ref().unwrap().get("pixels"), Some(&Value::Null));
    // Nothing from other_table: the channel is empty once capture confirms past its last insert.
    let last_lsn: String = c.query_one("SELECT pg_current_wal_lsn()::text", &[]).await.unwrap().get(0);
    let target: tensorcdc_change::Lsn = last_lsn.parse().unwrap();
    for _ in 0..200 {
        if run.stats.lock().unwrap().confirmed_lsn >= target {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(run.stats.lock().unwrap().confirmed_lsn >= target, "capture confirmed past the last insert");
    assert!(run.rx.try_recv().is_err(), "no message for other_table");
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_key_change_is_delete_tombstone_then_create() {
    let pg = start_pg(&[]);
    let c = client(&pg).await;
    c.batch_execute(CREATE).await.unwrap();
    let mut run = spawn(config(&pg, "pk"), identity());
    run.wait_streaming().await;
    insert_rows(&c, "mnist_train", 0, 1).await;
    c.batch_execute("UPDATE mnist_train SET id = 42, label = 5 WHERE id = 1").await.unwrap();
    // A plain update after it stays an update.
    c.batch_execute("UPDATE mnist_train SET label = 6 WHERE id = 42").await.unwrap();
    let msgs = run.take(5, 30).await;
    run.stop().await;
    let ops: Vec<Option<Op>> = msgs
        .iter()
        .map(|m| match &m.payload {
            Payload::Envelope(e) => Some(e.op),
            _ => None,
        })
        .collect();
    assert_eq!(ops, vec![Some(Op::Create), Some(Op::Delete), None, Some(Op::Create), Some(Op::Update)]);
    let key_id = |m: &tensorcdc_change::Message| match &m.key {
        Key::Row(r) => r.get("id").cloned(),
        _ => None,
    };
    // The delete and its tombstone carry the old key, the create the new one.
    assert_eq!(key_id(&msgs[1]), Some(Value::Int32(1)));
    assert_eq!(key_id(&msgs[2]), Some(Value::Int32(1)));
    assert_eq!(envelope(&msgs[1]).before.as_ref().unwrap().get("id"), Some(&Value::Int32(1)));
    assert_eq!(key_id(&msgs[3]), Some(Value::Int32(42)));
    let created = envelope(&msgs[3]).after.as_ref().unwrap();
    assert_eq!((created.get("id"), created.get("label")), (Some(&Value::Int32(42)), Some(&Value::Int16(5))));
    assert_eq!(created.get("pixels"), Some(&Value::Bytes(pixels(0))), "unchanged columns are in the new row");
    // Both halves belong to one transaction: only the create carries its acknowledgement.
    assert!(msgs[1].ack_lsn.is_none() && msgs[2].ack_lsn.is_none() && msgs[3].ack_lsn.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_larger_than_memory_goes_through_a_file_in_order() {
    // 64 kB of decoding memory: Postgres streams the transaction while it is in progress;
    // 14,000 rows of 784 bytes pass tensorcdc's 8 MB in-memory limit and go to a file.
    let pg = start_pg(&[("logical_decoding_work_mem", "64")]);
    let c = client(&pg).await;
    c.batch_execute(CREATE).await.unwrap();
    let mut run = spawn(config(&pg, "big"), identity());
    run.wait_streaming().await;
    c.batch_execute("BEGIN").await.unwrap();
    insert_rows(&c, "mnist_train", 0, 6000).await;
    c.batch_execute("SAVEPOINT sp").await.unwrap();
    insert_rows(&c, "mnist_train", 6000, 3000).await;
    c.batch_execute("ROLLBACK TO SAVEPOINT sp").await.unwrap();
    // A column added inside the transaction: rows after it carry it.
    c.batch_execute("ALTER TABLE mnist_train ADD COLUMN note text").await.unwrap();
    insert_rows(&c, "mnist_train", 9000, 8000).await;
    c.batch_execute("UPDATE mnist_train SET note = 'last' WHERE id = 17000").await.unwrap();
    c.batch_execute("COMMIT").await.unwrap();
    let msgs = run.take(14_001, 120).await;
    let stats = run.stop().await;
    assert!(stats.spilled_transactions >= 1, "the transaction went to a file: {stats:?}");
    let ids: Vec<i64> = msgs.iter().map(|m| id_of(m).unwrap()).collect();
    let want: Vec<i64> = (1..=6000).chain(9001..=17000).chain([17000]).collect();
    assert_eq!(ids, want, "in order, without the rolled-back rows");
    assert_eq!(pixels_of(&msgs[9000]).unwrap(), pixels(12000));
    assert!(envelope(&msgs[5999]).after.as_ref().unwrap().get("note").is_none());
    assert_eq!(envelope(&msgs[6000]).after.as_ref().unwrap().get("note"), Some(&Value::Null));
    assert_eq!(envelope(&msgs[14_000]).after.as_ref().unwrap().get("note"), Some(&Value::String("last".into())));
    assert_eq!(msgs.iter().filter(|m| m.ack_lsn.is_some()).count(), 1, "one acknowledgement, on the last change");
    assert!(msgs[14_000].ack_lsn.is_some());
    // Commit time, not decoding time: every change of the transaction has the same ts_ms.
    let ts = envelope(&msgs[0]).source.ts_ms;
    assert!(msgs.iter().all(|m| envelope(m).source.ts_ms == ts));
}
