//! A slot that is gone while the offsets say it existed (dropped by a DBA, or a failover to a
//! server without it): `initial` and `never` refuse with an error naming the slot and what was
//! lost, before anything is sent, instead of a silent second snapshot; `when_needed` starts
//! over with a new snapshot; `always` snapshots at every start (issue 21).

mod common;

use common::*;
use tensorcdc_postgres::SnapshotMode;

fn ids(msgs: &[tensorcdc_change::Message]) -> Vec<i64> {
    msgs.iter().filter_map(id_of).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_gone_is_an_error_unless_asked_to_start_over() {
    let pg = start_pg(&[]);
    let c = client(&pg).await;
    c.batch_execute(CREATE).await.unwrap();
    insert_rows(&c, "mnist_train", 0, 5).await;
    let cfg = config(&pg, "gone");
    let _ = std::fs::remove_file(offsets_file(&pg, "gone"));

    // A first run: the snapshot (5 rows), one streamed row, stopped.
    let mut run = spawn(cfg.clone(), identity());
    assert_eq!(ids(&run.take(5, 30).await), [1, 2, 3, 4, 5]);
    run.wait_streaming().await;
    insert_rows(&c, "mnist_train", 5, 1).await;
    assert_eq!(ids(&run.take(1, 30).await), [6]);
    run.stop().await;

    // The slot is dropped, rows are written meanwhile: those changes are lost to any slot.
    // (The walsender lets go of the slot a moment after the capture stops.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while let Err(e) = c.batch_execute("SELECT pg_drop_replication_slot('gone')").await {
        assert!(std::time::Instant::now() < deadline, "dropping the slot: {e}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    insert_rows(&c, "mnist_train", 6, 2).await;
    for mode in [SnapshotMode::Initial, SnapshotMode::Never] {
        let mut run = spawn(tensorcdc_postgres::CaptureConfig { snapshot_mode: mode, ..cfg.clone() }, identity());
        let e = tokio::time::timeout(std::time::Duration::from_secs(30), &mut run.handle).await.expect("ends").unwrap().unwrap_err();
        let text = e.to_string();
        assert!(!e.is_retryable(), "{text}");
        assert!(
            text.contains("replication slot \"gone\" is gone") && text.contains("are lost") && text.contains("snapshot.mode=when_needed"),
            "{mode:?}: {text}"
        );
        assert!(run.rx.try_recv().is_err(), "{mode:?}: nothing was sent");
        let slots: i64 = c.query_one("SELECT count(*) FROM pg_replication_slots", &[]).await.unwrap().get(0);
        assert_eq!(slots, 0, "{mode:?}: no new slot");
    }

    // when_needed: the user's consent to start over: a new snapshot of the table as it is.
    let mut run = spawn(tensorcdc_postgres::CaptureConfig { snapshot_mode: SnapshotMode::WhenNeeded, ..cfg.clone() }, identity());
    assert_eq!(ids(&run.take(8, 30).await), (1..=8).collect::<Vec<_>>());
    run.wait_streaming().await;
    run.stop().await;

    // always: the slot exists, and the snapshot is taken again at start, then the stream.
    let mut run = spawn(tensorcdc_postgres::CaptureConfig { snapshot_mode: SnapshotMode::Always, ..cfg.clone() }, identity());
    assert_eq!(ids(&run.take(8, 30).await), (1..=8).collect::<Vec<_>>());
    run.wait_streaming().await;
    insert_rows(&c, "mnist_train", 8, 1).await;
    assert_eq!(ids(&run.take(1, 30).await), [9]);
    run.stop().await;
    let _ = std::fs::remove_file(offsets_file(&pg, "gone"));
}
