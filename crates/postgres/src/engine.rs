//! The capture engine: publication and slot lifecycle, the consistent snapshot, the
//! stream, and acknowledgements.
//!
//! **The acknowledgement rule.** An LSN is confirmed to Postgres (standby status update,
//! which moves the slot's `confirmed_flush_lsn`) only when every message of every
//! transaction that committed at or before it has been reported durable by the sink. The
//! last message of each transaction carries the transaction's end LSN (`ack_lsn`); sinks
//! report delivery in order, so a reported LSN covers everything before it. A transaction
//! that produced no message (nothing captured in it), and the server's keepalive position,
//! are confirmed only while nothing emitted is still undelivered. A crash can therefore
//! repeat messages after the last confirmed LSN, but never lose one: on restart the slot
//! resends every transaction that committed after `confirmed_flush_lsn`.
//!
//! **Snapshot and stream hand-off.** A new slot is created with an exported snapshot; the
//! snapshot reads every included table inside that snapshot (`SET TRANSACTION SNAPSHOT`),
//! then the stream starts at the slot's consistent point, so each row is either in the
//! snapshot or in the stream, never both, never neither.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tensorcdc_change::{ChangeEvent, Lsn, Message, Op, Payload, Row, Sink, Snapshot, Source};
use tokio::sync::watch;
use tokio_postgres::Client;
use tracing::{info, warn};

use crate::catalog::{ensure_publication, list_tables, quote_ident, slot_state, wait_for_slot, Rel, SlotWait};
use crate::config::{CaptureConfig, SnapshotMode};
use crate::incremental::Incremental;
use crate::offsets::{offsets_path, read_offsets, remove_offsets, write_offsets, Offsets};
use crate::replication::ReplicationConn;
use crate::txmeta::TxOrder;
use crate::types::TypeCache;
use crate::CaptureError;
/// A transform chain: one message in, zero or more pushed to the output.
pub type Transform = Arc<dyn Fn(Message, &mut Vec<Message>) + Send + Sync>;

/// The chain that changes nothing.
pub fn identity() -> Transform {
    Arc::new(|m, out| out.push(m))
}

/// Counters, readable while capture runs.
#[derive(Debug, Clone, Default)]
pub struct CaptureStats {
    pub snapshot_rows: u64,
    pub streamed_changes: u64,
    pub messages: u64,
    pub transactions: u64,
    /// Transactions Postgres streamed while in progress (larger than `logical_decoding_work_mem`).
    pub streamed_transactions: u64,
    /// Streamed transactions that outgrew memory and were kept in a temporary file.
    pub spilled_transactions: u64,
    pub confirmed_lsn: Lsn,
    pub snapshot_done: bool,
    /// Incremental snapshot: rows and chunks emitted, and the table being read.
    pub incremental_rows: u64,
    pub incremental_chunks: u64,
    pub incremental_table: Option<String>,
    /// The commit after which an incremental snapshot's last rows were sent (0: nothing to
    /// send; `u64::MAX` from the read that finds the tables done until the commit that carries
    /// the last chunk is seen); `None` while one is queued or running, or none ran.
    pub incremental_done_at: Option<Lsn>,
    pub streaming: bool,
    /// Things a person should know (include-list entries that match no table yet, ...).
    pub warnings: Vec<String>,
    /// The table being snapshotted, its rows read so far and the planner's estimate
    /// (`pg_class.reltuples`, -1 when never analysed).
    pub snapshot_table: Option<(String, u64, i64)>,
    /// Where streaming started.
    pub stream_start_lsn: Lsn,
    /// The server's WAL end as last reported (keepalives), for the lag behind it.
    pub server_wal_end: Lsn,
    /// Commit time (Unix ms) of the last transaction seen.
    pub last_commit_ms: i64,
    /// Since when, and why, the capture is reconnecting (said again once it streams).
    pub outage: Option<(Instant, String)>,
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as i64
}

pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos() as i64
}

/// The transaction a change belongs to, as its events report it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TxMeta {
    /// Commit time (the snapshot: its start), microseconds since the epoch.
    pub ts_us: i64,
    pub xid: Option<i64>,
    /// The end LSN of the session's previous commit (`sequence`'s first half).
    pub last_commit: Option<Lsn>,
}

/// Shared pieces of one capture session.
pub(crate) struct Ctx<'a> {
    pub cfg: &'a CaptureConfig,
    pub transform: &'a Transform,
    pub stats: &'a Arc<Mutex<CaptureStats>>,
    pub prefix: Arc<str>,
    pub db: Arc<str>,
    /// Column types resolved so far (shared by the snapshot and the stream).
    pub types: tokio::sync::Mutex<TypeCache>,
    /// Set when a table has a type without a binary decoder: stream text tuples.
    pub text_tuples: &'a std::sync::atomic::AtomicBool,
    /// The incremental snapshot (lives across sessions).
    pub incr: &'a Mutex<Incremental>,
    /// This session's number (batches' completion handles carry it).
    pub session: u64,
}

impl Ctx<'_> {
    /// The topic of BEGIN/END records.
    pub fn tx_topic(&self) -> String {
        format!("{}.{}", self.cfg.topic_prefix, self.cfg.transaction_topic)
    }

    /// The END record of a transaction that emitted changes (`provide.transaction.metadata`).
    pub fn tx_end(&self, order: &TxOrder, xid: u32, end_lsn: u64, ts_us: i64) -> Option<Message> {
        if !self.cfg.provide_transaction_metadata {
            return None;
        }
        order.end(xid as i64, end_lsn, ts_us.div_euclid(1000), &self.tx_topic(), &self.cfg.converter)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn event(
        &self,
        out: &mut Vec<Message>,
        rel: &Rel,
        op: Op,
        before: Option<Row>,
        after: Option<Row>,
        snapshot: Snapshot,
        tx: &TxMeta,
        lsn: Option<Lsn>,
        order: Option<&mut TxOrder>,
    ) {
        if self.cfg.skipped_ops.iter().any(|o| o == op.code()) {
            return;
        }
        // `provide.transaction.metadata`: the block, and BEGIN before the first change.
        let transaction = match (order, tx.xid, lsn) {
            (Some(o), Some(xid), Some(l)) => {
                let (block, begin) =
                    o.next(&format!("{}.{}", rel.schema, rel.table), xid, l.0, tx.ts_us.div_euclid(1000), &self.tx_topic(), &self.cfg.converter);
                out.extend(begin);
                Some(block)
            }
            _ => None,
        };
        let key = after.as_ref().or(before.as_ref()).and_then(|r| rel.key_of(r));
        // A streamed change inside an incremental snapshot's window drops the chunk's row.
        if snapshot == Snapshot::False && self.cfg.signals.table().is_some() {
            if let Some(k) = &key {
                self.incr.lock().expect("incremental").seen(rel, k);
            }
        }
        let now_ns = now_ns();
        let event = ChangeEvent {
            op,
            before,
            after,
            source: Source {
                name: self.prefix.clone(),
                ts_ms: tx.ts_us.div_euclid(1000),
                ts_us: tx.ts_us,
                snapshot,
                db: self.db.clone(),
                schema: rel.schema.clone(),
                table: rel.table.clone(),
                tx_id: tx.xid,
                lsn,
                last_commit_lsn: tx.last_commit,
            },
            ts_ms: now_ns.div_euclid(1_000_000),
            ts_ns: now_ns,
            key,
            fields: (op == Op::Truncate).then(|| rel.fields.clone()),
            transaction,
        };
        let msg = Message {
            topic: rel.topic.clone(),
            key: event.key.clone().map_or(tensorcdc_change::Key::None, tensorcdc_change::Key::Row),
            commit_ts_ms: tx.ts_us.div_euclid(1000),
            ack_lsn: None,
            payload: Payload::Envelope(event),
        };
        let tombstone = (op == Op::Delete && self.cfg.tombstones_on_delete).then(|| Message {
            topic: msg.topic.clone(),
            key: msg.key.clone(),
            payload: Payload::Tombstone,
            ack_lsn: None,
            commit_ts_ms: msg.commit_ts_ms,
        });
        (self.transform)(msg, out);
        if let Some(t) = tombstone {
            // A tombstone passes the chain as a tombstone (transforms keep or drop it).
            (self.transform)(t, out);
        }
    }
}

/// Runs capture until `shutdown` turns true (or, for `initial_only`, the snapshot is done),
/// retrying retryable errors with exponential backoff.
pub async fn run_capture(
    cfg: CaptureConfig,
    transform: Transform,
    sink: &mut dyn Sink,
    mut shutdown: watch::Receiver<bool>,
    stats: Arc<Mutex<CaptureStats>>,
) -> Result<CaptureStats, CaptureError> {
    let mut backoff = Duration::from_millis(200);
    let text_tuples = std::sync::atomic::AtomicBool::new(false);
    let incr = Mutex::new(Incremental::default());
    let mut fatal: Vec<Instant> = Vec::new();
    let mut session_no = 0u64;
    let mut retries = 0u32;
    loop {
        let started = Instant::now();
        session_no += 1;
        match session(&cfg, &transform, sink, &mut shutdown, &stats, &text_tuples, &incr, session_no).await {
            Ok(()) => {
                if cfg.drop_slot_on_stop {
                    drop_slot(&cfg).await;
                }
                return Ok(stats.lock().expect("stats").clone());
            }
            Err(CaptureError::Restart(why)) => info!("capture: {why}"),
            Err(CaptureError::Sink(tensorcdc_change::SinkError::Fatal(why))) => {
                // A new producer from the last confirmed LSN; three fatal errors within a
                // minute mean it cannot succeed (fenced, not authorised): exit, naming it.
                fatal.retain(|t: &Instant| t.elapsed() < Duration::from_secs(60));
                fatal.push(Instant::now());
                if fatal.len() > 3 {
                    return Err(CaptureError::Sink(tensorcdc_change::SinkError::Permanent(format!(
                        "{why} (a new producer failed the same way 3 times within a minute)"
                    ))));
                }
                let from = match stats.lock().expect("stats").confirmed_lsn {
                    Lsn(0) => "the slot's confirmed position".to_string(),
                    l => format!("the last confirmed LSN {l}"),
                };
                warn!("capture: {why}; starting a new producer, from {from}");
                sink.reset().await?;
                stats.lock().expect("stats").outage.get_or_insert_with(|| (Instant::now(), why));
            }
            Err(e) if e.is_retryable() => {
                if started.elapsed() > Duration::from_secs(30) {
                    backoff = Duration::from_millis(200);
                    retries = 0;
                }
                if cfg.errors_max_retries.is_some_and(|max| retries >= max) {
                    return Err(e);
                }
                retries += 1;
                warn!("capture: {e}; retrying in {backoff:?}");
                stats.lock().expect("stats").outage.get_or_insert_with(|| (Instant::now(), e.to_string()));
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => return Ok(stats.lock().expect("stats").clone()),
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            Err(e) => return Err(e),
        }
        if *shutdown.borrow() {
            return Ok(stats.lock().expect("stats").clone());
        }
    }
}

/// Drops the slot (best effort, `slot.drop.on.stop`).
async fn drop_slot(cfg: &CaptureConfig) {
    if let Ok(client) = connect_sql(cfg).await {
        for _ in 0..50 {
            match client.execute("SELECT pg_drop_replication_slot($1)", &[&cfg.slot_name]).await {
                Ok(_) => return remove_offsets(cfg),
                // Still active for a moment after our connection closed.
                Err(e) if e.code().is_some_and(|c| c.code() == "55006") => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(e) => {
                    warn!("dropping slot {}: {e}", cfg.slot_name);
                    return;
                }
            }
        }
    }
}

async fn connect_sql(cfg: &CaptureConfig) -> Result<Client, CaptureError> {
    crate::conn::connect_config(&cfg.pg_config(), &cfg.tls, format!("{}:{}", cfg.host, cfg.port)).await
}

#[allow(clippy::too_many_arguments)] // the session's parts, each borrowed apart
async fn session(
    cfg: &CaptureConfig,
    transform: &Transform,
    sink: &mut dyn Sink,
    shutdown: &mut watch::Receiver<bool>,
    stats: &Arc<Mutex<CaptureStats>>,
    text_tuples: &std::sync::atomic::AtomicBool,
    incr: &Mutex<Incremental>,
    session_no: u64,
) -> Result<(), CaptureError> {
    let client = connect_sql(cfg).await?;
    let wal_level: String = client.query_one("SHOW wal_level", &[]).await.map_err(|e| CaptureError::from_pg("SHOW wal_level", e))?.get(0);
    if wal_level != "logical" {
        return Err(CaptureError::Setup(format!(
            "Postgres at {}:{} has wal_level = {wal_level}; logical replication needs wal_level = logical \
             (run `ALTER SYSTEM SET wal_level = logical` and restart the server)",
            cfg.host, cfg.port
        )));
    }
    if cfg.snapshot_mode == SnapshotMode::InitialOnly {
        // A one-off read (train, evaluate): a table that is not there now will not be read.
        let have = crate::catalog::all_tables(&client).await?;
        for re in &cfg.include {
            if !have.iter().any(|t| re.is_match(t)) {
                let plain = re.as_str().trim_start_matches("^(?:").trim_end_matches(")$").replace("\\.", ".");
                let near =
                    tensorcdc_change::names::nearest(&plain, have.iter().map(String::as_str)).map(|n| format!("; did you mean {n}?")).unwrap_or_default();
                let list = if have.is_empty() { "none".to_string() } else { have.join(", ") };
                return Err(CaptureError::Setup(format!("no table {plain} to read (tables: {list}{near})")));
            }
        }
    }
    ensure_publication(cfg, &client).await?;
    let tables = list_tables(cfg, &client).await?;
    for re in &cfg.include {
        if !tables.iter().any(|(s, t, _)| re.is_match(&format!("{s}.{t}"))) {
            let pattern = re.as_str().trim_start_matches("^(?:").trim_end_matches(")$").to_string();
            let w = format!("table.include.list entry {pattern:?} matches no table yet; its rows will be captured once such a table exists");
            warn!("{w}");
            let mut st = stats.lock().expect("stats");
            if !st.warnings.contains(&w) {
                st.warnings.push(w);
            }
        }
    }

    // The slot: reuse it, or create it with an exported snapshot. Held by another connection:
    // often one of a process killed a moment ago, which the server has not noticed yet; waited
    // for `slot.max.retries` times `slot.retry.delay.ms`, as Debezium retries, saying why.
    let wait = Duration::from_millis(cfg.slot_retry_delay_ms.saturating_mul(cfg.slot_max_retries as u64));
    let name = &cfg.slot_name;
    let said = |pid, wait| warn!("replication slot {name:?} is in use by server process {pid} (a capture killed a moment ago?); waiting up to {wait:?} for it");
    match wait_for_slot(&client, name, wait, said).await? {
        SlotWait::Missing | SlotWait::Free { waited: None } => {}
        SlotWait::Free { waited: Some(waited) } => warn!("replication slot {name:?} is free after {waited:.1?}"),
        SlotWait::Busy { pid, waited } => {
            return Err(CaptureError::Setup(format!(
                "replication slot {name:?} is in use by another process (PID {pid}), still after {waited:.0?} (slot.max.retries {} x slot.retry.delay.ms {}); \
                 stop the other capture or choose another slot.name",
                cfg.slot_max_retries, cfg.slot_retry_delay_ms
            )))
        }
    }
    let mut slot = slot_state(cfg, &client).await?;
    let offsets = read_offsets(cfg)?;
    // The offsets say this slot existed (its snapshot completed), and it is gone: every change
    // since it was last confirmed is lost. Only a user who asks to start over gets a new
    // snapshot (when_needed, always); the others get an error naming the slot, not a silent
    // second snapshot that counts rows twice downstream.
    if slot.is_none() && !cfg.temporary_slot && offsets.as_ref().is_some_and(|o| o.slot == cfg.slot_name && o.snapshot_completed) {
        let file = offsets_path(cfg).map(|p| p.display().to_string()).unwrap_or_default();
        match cfg.snapshot_mode {
            SnapshotMode::WhenNeeded | SnapshotMode::Always | SnapshotMode::InitialOnly => {
                warn!(
                    "replication slot {} is gone although {file} says it existed; the changes since its last confirmed position are lost: snapshotting again",
                    cfg.slot_name
                )
            }
            SnapshotMode::Initial | SnapshotMode::Never => {
                let now: String =
                    client.query_one("SELECT pg_current_wal_lsn()::text", &[]).await.map_err(|e| CaptureError::from_pg("pg_current_wal_lsn", e))?.get(0);
                return Err(CaptureError::Setup(format!(
                    "replication slot {:?} is gone (dropped, or a failover to a server without it), but {file} says it existed: \
                     the changes from its last confirmed position to the server's {now} are lost. \
                     Start over with snapshot.mode=when_needed (a new snapshot), or remove {file}",
                    cfg.slot_name
                )));
            }
        }
    }
    if slot.is_none() && cfg.temporary_slot && stats.lock().expect("stats").snapshot_done {
        warn!(
            "the temporary slot {} went with its connection; taking a new one and its snapshot: rows are read again, and changes made meanwhile are seen only as the rows they left",
            cfg.slot_name
        );
    }
    if slot.is_some() && offsets.is_none() && cfg.snapshot_mode != SnapshotMode::Never && !cfg.temporary_slot {
        warn!(
            "slot {} exists but no offsets file was found ({}); assuming its snapshot completed (keep the state directory between runs)",
            cfg.slot_name,
            offsets_path(cfg).map(|p| p.display().to_string()).unwrap_or_default()
        );
    }
    let snapshot_incomplete =
        slot.is_some() && cfg.snapshot_mode != SnapshotMode::Never && offsets.as_ref().is_some_and(|o| o.slot == cfg.slot_name && !o.snapshot_completed);
    let mut repl = ReplicationConn::connect(&cfg.pg_config(), &cfg.tls, "tensorcdc").await?;
    // always: a snapshot at each start of the process (not at each reconnect of it).
    let again = cfg.snapshot_mode == SnapshotMode::Always && slot.is_some() && !stats.lock().expect("stats").snapshot_done;
    if snapshot_incomplete || again {
        if again {
            info!("snapshot.mode=always: dropping slot {} to snapshot again", cfg.slot_name);
        } else {
            warn!("the snapshot of slot {} did not complete; dropping the slot and starting over", cfg.slot_name);
        }
        repl.simple_query(&format!("DROP_REPLICATION_SLOT {}", quote_ident(&cfg.slot_name))).await?;
        slot = None;
    }
    let resuming_incremental = {
        let mut i = incr.lock().expect("incremental");
        i.begin_session(offsets.as_ref(), slot.is_none());
        i.in_progress()
    };
    {
        // "Done, pending its commit" belongs to the session that read the last chunk. A new
        // session that goes on with the snapshot reads that chunk again and settles it; one
        // with none to go on with (a new slot without an incremental snapshot) clears it.
        let mut st = stats.lock().expect("stats");
        if !resuming_incremental && st.incremental_done_at == Some(Lsn(u64::MAX)) {
            st.incremental_done_at = None;
        }
    }
    let ctx = Ctx {
        cfg,
        transform,
        stats,
        prefix: cfg.topic_prefix.as_str().into(),
        db: cfg.dbname.as_str().into(),
        types: Default::default(),
        text_tuples,
        incr,
        session: session_no,
    };
    crate::incremental::check(&ctx, &client).await?;
    if cfg.signals.initial && (cfg.signals.table().is_none() || cfg.snapshot_mode != SnapshotMode::Never) {
        return Err(CaptureError::Config {
            key: "tensorcdc.snapshot.incremental".into(),
            reason: "needs signal.data.collection (the watermarks' table) and snapshot.mode=no_data".into(),
        });
    }
    // The completion handles of the batches this session sent, oldest first.
    let mut pending = std::collections::VecDeque::new();
    let mut start_lsn = Lsn(0);
    if slot.is_none() {
        let want_snapshot = cfg.snapshot_mode != SnapshotMode::Never;
        if want_snapshot {
            // Recorded before the slot exists: a crash from here on until the snapshot is
            // durable in the sink makes the next start drop the slot and snapshot again.
            write_offsets(cfg, &Offsets::fresh(cfg, false))?;
        }
        let sql = format!(
            "CREATE_REPLICATION_SLOT {} {}LOGICAL pgoutput {}",
            quote_ident(&cfg.slot_name),
            if cfg.temporary_slot { "TEMPORARY " } else { "" },
            if want_snapshot { "EXPORT_SNAPSHOT" } else { "NOEXPORT_SNAPSHOT" }
        );
        let rows = repl.simple_query(&sql).await?;
        let row = rows.first().ok_or_else(|| CaptureError::Protocol("CREATE_REPLICATION_SLOT returned no row".into()))?;
        let consistent: Lsn = row.get(1).cloned().flatten().unwrap_or_default().parse().map_err(CaptureError::Protocol)?;
        start_lsn = consistent;
        info!("created slot {} at {consistent}", cfg.slot_name);
        if cfg.signals.initial {
            // Recorded once the slot exists: a slot that was never made has no snapshot to resume.
            incr.lock().expect("incremental").plan_initial(cfg, &tables, stats)?;
        }
        if want_snapshot {
            let name = row.get(2).cloned().flatten();
            let r = crate::snapshot::snapshot(&ctx, &client, name.as_deref(), consistent, sink, &mut pending, shutdown).await;
            if let Err(e) = r {
                // Do not leave a slot whose snapshot never completed: the next start must snapshot again.
                let _ = repl.simple_query(&format!("DROP_REPLICATION_SLOT {}", quote_ident(&cfg.slot_name))).await;
                return Err(e);
            }
            write_offsets(cfg, &Offsets::fresh(cfg, true))?;
        }
    } else if cfg.snapshot_mode == SnapshotMode::InitialOnly {
        crate::snapshot::snapshot(&ctx, &client, None, Lsn(0), sink, &mut pending, shutdown).await?;
    }
    stats.lock().expect("stats").snapshot_done = true;
    if cfg.snapshot_mode == SnapshotMode::InitialOnly && !cfg.temporary_slot {
        // Nothing will stream from it: do not leave a slot that pins WAL.
        match repl.simple_query(&format!("DROP_REPLICATION_SLOT {}", quote_ident(&cfg.slot_name))).await {
            Ok(_) => remove_offsets(cfg),
            Err(e) => warn!("dropping slot {} after the initial_only snapshot: {e}", cfg.slot_name),
        }
    }
    if cfg.snapshot_mode == SnapshotMode::InitialOnly || *shutdown.borrow() {
        repl.close().await;
        return Ok(());
    }
    crate::stream::stream(&ctx, &client, repl, start_lsn, sink, pending, shutdown).await
}
