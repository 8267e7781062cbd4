//! The stream: `START_REPLICATION` with pgoutput, decoding each message into events, and
//! the acknowledgement rule (see `engine`'s overview): the confirmed LSN only moves past
//! what the sink reported durable.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tensorcdc_change::{BatchAck, Lsn, Message, Op, PendingAck, Sink, Snapshot, Value};
use tokio::sync::watch;
use tokio_postgres::Client;
use tracing::info;

use bytes::Bytes;

use crate::catalog::{build_rel, describe, list_tables, quote_ident, quote_lit, Column, Rel};
use crate::engine::{now_ns, Ctx, TxMeta};
use crate::pgoutput::{self, LogicalMessage};
use crate::replication::{pg_ts_to_unix_ms, pg_ts_to_unix_us, ReplicationConn, ReplicationMessage};
use crate::spill::{Record, SpillReader, SpilledTx};
use crate::txmeta::TxOrder;
use crate::types::PgType;
use crate::CaptureError;

/// What the engine knows about acknowledgements.
#[derive(Debug, Default)]
struct Acks {
    /// Highest LSN reported durable by the sink.
    delivered: u64,
    /// Highest `ack_lsn` handed to the sink.
    emitted: u64,
    /// Highest position with nothing to deliver (empty transactions, keepalives).
    idle: u64,
    /// Last LSN confirmed to the server.
    confirmed: u64,
}

impl Acks {
    /// The LSN that may be confirmed now. `quiet`: no transaction open and no message
    /// waiting in the engine.
    fn safe(&self, quiet: bool) -> u64 {
        if quiet && self.delivered >= self.emitted {
            self.delivered.max(self.idle)
        } else {
            self.delivered
        }
    }
}

/// An open transaction (non-streamed: changes arrive between Begin and Commit).
pub(crate) struct Tx {
    xid: u32,
    /// The commit's LSN (Begin's `final_lsn`): where a signal in it counts as acted on.
    final_lsn: u64,
    ts_us: i64,
    /// Its changes counted for `provide.transaction.metadata`.
    order: TxOrder,
    /// The latest change, held back until Commit gives it the acknowledgement LSN.
    held: Option<Message>,
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn stream(
    ctx: &Ctx<'_>,
    client: &Client,
    mut repl: ReplicationConn,
    start: Lsn,
    sink: &mut dyn Sink,
    mut pending: VecDeque<PendingAck>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), CaptureError> {
    let v = repl.server_version;
    let proto = if v >= 160000 {
        4
    } else if v >= 140000 {
        2
    } else {
        1
    };
    let mut opts = vec![format!("proto_version '{proto}'"), format!("publication_names {}", quote_lit(&quote_ident(&ctx.cfg.publication_name)))];
    if proto >= 2 {
        opts.push("streaming 'on'".into());
    }
    let binary = v >= 140000 && ctx.cfg.binary_tuples && !ctx.text_tuples.load(Ordering::Relaxed) && all_binary(ctx, client).await?;
    if binary {
        opts.push("binary 'true'".into());
    }
    let sql = format!("START_REPLICATION SLOT {} LOGICAL {} ({})", quote_ident(&ctx.cfg.slot_name), start, opts.join(", "));
    repl.start_replication(&sql).await?;
    info!("streaming from slot {} ({sql})", ctx.cfg.slot_name);
    {
        let mut s = ctx.stats.lock().expect("stats");
        s.streaming = true;
        s.stream_start_lsn = start;
        if let Some((since, why)) = s.outage.take() {
            let from = if start.0 == 0 { "the slot's confirmed position".to_string() } else { start.to_string() };
            tracing::warn!("capture: streaming again from {from}, {:.1} s after: {why}", since.elapsed().as_secs_f64());
        }
        s.snapshot_table = None;
    }
    crate::incremental::start(ctx, client).await?;
    let mut acks = Acks::default();
    let mut st = State::default();
    let mut batch: Vec<Message> = Vec::new();
    let status_every = Duration::from_millis(ctx.cfg.status_interval_ms.max(100));
    let mut ticker = tokio::time::interval(Duration::from_millis(200));
    let beat_every = (ctx.cfg.heartbeat_interval_ms > 0).then(|| Duration::from_millis(ctx.cfg.heartbeat_interval_ms));
    let mut last_beat = Instant::now();
    let mut last_status = Instant::now();
    // Since when the sink has held a batch without reporting it (said once, and its end).
    let mut stalled: Option<Instant> = None;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => {
                if !batch.is_empty() {
                    send(ctx, sink, std::mem::take(&mut batch), &mut pending).await?;
                }
                sink.flush().await?;
                drain(&mut pending, &mut acks).or_else(|e| cause(sink, e))?;
                let safe = acks.safe(st.tx.is_none());
                ctx.incr.lock().expect("incremental").persist_up_to(ctx.cfg, safe)?;
                if safe > acks.confirmed {
                    repl.send_status(safe, false).await?;
                    ctx.stats.lock().expect("stats").confirmed_lsn = Lsn(safe);
                }
                repl.close().await;
                return Ok(());
            }
            r = async { pending.front_mut().expect("not empty").wait().await }, if !pending.is_empty() => {
                pending.pop_front();
                if let Some(l) = r.or_else(|e| cause(sink, e.into()))? {
                    acks.delivered = acks.delivered.max(l.0);
                }
                drain(&mut pending, &mut acks).or_else(|e| cause(sink, e))?;
            }
            _ = ticker.tick() => {
                sink.health()?;
                let oldest = pending.front().map(|p| p.sent_at.elapsed());
                match (stalled, oldest, sink.stall_after_secs()) {
                    (None, Some(age), Some(limit)) if age.as_secs() >= limit => {
                        tracing::warn!(
                            "capture: the sink has not confirmed a batch sent {:.0} s ago ({} batches waiting): waiting for it (a broker down or paused?); nothing after {} is confirmed meanwhile",
                            age.as_secs_f64(), pending.len(), Lsn(acks.confirmed)
                        );
                        stalled = Some(Instant::now() - age);
                    }
                    (Some(since), o, _) if o.is_none_or(|age| age < since.elapsed()) => {
                        tracing::warn!("capture: the sink delivers again, {:.1} s after it stalled", since.elapsed().as_secs_f64());
                        stalled = None;
                    }
                    _ => {}
                }
                if beat_every.is_some_and(|e| last_beat.elapsed() >= e) {
                    last_beat = Instant::now();
                    crate::heartbeat::beat(ctx.cfg, client, sink, &mut pending, ctx.session, &mut repl, acks.confirmed).await?;
                }
            }
            msg = repl.recv() => {
                let Some(msg) = msg? else {
                    return Err(CaptureError::Disconnected { context: "replication stream".into(), reason: "server ended the stream".into() });
                };
                match msg {
                    ReplicationMessage::Keepalive { wal_end, reply_requested } => {
                        ctx.stats.lock().expect("stats").server_wal_end = Lsn(wal_end);
                        if st.tx.is_none() && batch.is_empty() {
                            acks.idle = acks.idle.max(wal_end);
                        }
                        if reply_requested {
                            let safe = acks.safe(st.tx.is_none() && batch.is_empty());
                            repl.send_status(safe.max(acks.confirmed), false).await?;
                            acks.confirmed = acks.confirmed.max(safe);
                            last_status = Instant::now();
                        }
                    }
                    ReplicationMessage::XLogData { wal_start, data, .. } => {
                        let raw = data.clone();
                        let m = pgoutput::decode(data, st.stream_xid.is_some())?;
                        if let Some(r) = handle(ctx, client, binary, m, &raw, wal_start, &mut st, &mut batch, &mut acks).await? {
                            replay(ctx, r, sink, &mut repl, &mut pending, &mut batch, &mut acks).await?;
                        }
                    }
                }
                // Mid-transaction the rest of it is on its way: send full batches only.
                if batch.len() >= ctx.cfg.max_batch_size || (!batch.is_empty() && st.tx.is_none() && !repl.has_buffered_frame()) {
                    let b = std::mem::take(&mut batch);
                    let n = b.len() as u64;
                    send(ctx, sink, b, &mut pending).await?;
                    ctx.stats.lock().expect("stats").messages += n;
                }
            }
        }
        drain(&mut pending, &mut acks).or_else(|e| cause(sink, e))?;
        let safe = acks.safe(st.tx.is_none() && batch.is_empty());
        ctx.incr.lock().expect("incremental").persist_up_to(ctx.cfg, safe)?;
        if (safe > acks.confirmed && last_status.elapsed() >= Duration::from_millis(200)) || last_status.elapsed() >= status_every {
            let lsn = safe.max(acks.confirmed);
            repl.send_status(lsn, false).await?;
            acks.confirmed = lsn;
            last_status = Instant::now();
            ctx.stats.lock().expect("stats").confirmed_lsn = Lsn(lsn);
        }
    }
}

/// Hands a batch to the sink with its completion handle, kept (in order) in `pending`.
pub(crate) async fn send(ctx: &Ctx<'_>, sink: &mut dyn Sink, batch: Vec<Message>, pending: &mut VecDeque<PendingAck>) -> Result<(), CaptureError> {
    let (ack, p) = BatchAck::for_batch(&batch, ctx.session);
    pending.push_back(p);
    sink.send(batch, ack).await?;
    Ok(())
}

/// A failed batch's error, or the sink's own account of why (a Kafka producer's fatal error
/// explains the purged deliveries that follow it).
fn cause<T>(sink: &dyn Sink, e: CaptureError) -> Result<T, CaptureError> {
    sink.health()?;
    Err(e)
}

/// Takes the reports that have come, oldest first: `delivered` moves to the LSN of the last
/// batch whose report (and every earlier one's) came; a failed or lost batch is an error.
fn drain(pending: &mut VecDeque<PendingAck>, acks: &mut Acks) -> Result<(), CaptureError> {
    while let Some(front) = pending.front_mut() {
        match front.try_take() {
            None => break,
            Some(r) => {
                pending.pop_front();
                if let Some(l) = r? {
                    acks.delivered = acks.delivered.max(l.0);
                }
            }
        }
    }
    Ok(())
}

/// True when every column of every included table has a binary decoder, so binary tuples
/// can be asked for.
async fn all_binary(ctx: &Ctx<'_>, client: &Client) -> Result<bool, CaptureError> {
    let mut cache = ctx.types.lock().await;
    for (schema, table, oid) in list_tables(ctx.cfg, client).await? {
        let (cols, _) = describe(client, oid, &mut cache).await?;
        if let Some(c) = cols.iter().find(|c| !c.ty.binary_supported()) {
            info!("{schema}.{table} column {} has type {} without a binary decoder: streaming text tuples", c.name, c.ty.name);
            return Ok(false);
        }
    }
    Ok(true)
}

/// Sets the ack LSN on the last message of a committed transaction and moves its messages
/// to the batch; a transaction with no message only advances the idle position.
fn commit(msgs: Vec<Message>, end_lsn: u64, batch: &mut Vec<Message>, acks: &mut Acks) {
    if msgs.is_empty() {
        acks.idle = acks.idle.max(end_lsn);
        return;
    }
    let start = batch.len();
    batch.extend(msgs);
    if let Some(last) = batch[start..].last_mut() {
        last.ack_lsn = Some(Lsn(end_lsn));
    }
    acks.emitted = acks.emitted.max(end_lsn);
}

/// A committed streamed transaction whose records the loop must now send.
pub(crate) struct Replay {
    reader: SpillReader,
    end_lsn: u64,
    tx: TxMeta,
}

/// What the stream holds between messages.
#[derive(Default)]
pub(crate) struct State {
    pub rels: HashMap<u32, Arc<Rel>>,
    pub tx: Option<Tx>,
    /// Streamed (in-progress) transactions by top-level xid.
    pub streams: HashMap<u32, SpilledTx>,
    pub stream_xid: Option<u32>,
    /// The end LSN of the last commit seen in this session.
    pub last_commit: Option<Lsn>,
}

/// The events of one change message (insert, update, delete, truncate) against the
/// relations in `rels`.
fn change_events(
    ctx: &Ctx<'_>,
    rels: &HashMap<u32, Arc<Rel>>,
    m: LogicalMessage,
    wal_start: u64,
    tx: TxMeta,
    order: &mut TxOrder,
) -> Result<Vec<Message>, CaptureError> {
    let mut order = ctx.cfg.provide_transaction_metadata.then_some(order);
    let rel_of = |oid: u32, what: &str| rels.get(&oid).cloned().ok_or_else(|| CaptureError::Protocol(format!("{what} for unknown relation {oid}")));
    let lsn = Some(Lsn(wal_start));
    let mut msgs = Vec::with_capacity(2);
    match m {
        LogicalMessage::Insert { xid: sx, oid, new } => {
            let rel = rel_of(oid, "Insert")?;
            if rel.included {
                let after = rel.row(&new, wal_start)?;
                ctx.event(
                    &mut msgs,
                    &rel,
                    Op::Create,
                    None,
                    Some(after),
                    Snapshot::False,
                    &TxMeta { xid: tx.xid.or(sx.map(|x| x as i64)), ..tx },
                    lsn,
                    order.as_deref_mut(),
                );
            }
        }
        LogicalMessage::Update { xid: sx, oid, old, new } => {
            let rel = rel_of(oid, "Update")?;
            if rel.included {
                let mut after = rel.row(&new, wal_start)?;
                let old_row = match &old {
                    Some((_, t)) => Some(rel.row(t, wal_start)?),
                    None => None,
                };
                let txm = TxMeta { xid: tx.xid.or(sx.map(|x| x as i64)), ..tx };
                // A changed primary key: Debezium emits a delete (and tombstone) for the old
                // key, then a create for the new one.
                if let Some(o) = &old_row {
                    if rel.key_of(o).is_some() && rel.key_of(o) != rel.key_of(&after) {
                        ctx.event(&mut msgs, &rel, Op::Delete, old_row.clone(), None, Snapshot::False, &txm, lsn, order.as_deref_mut());
                        ctx.event(&mut msgs, &rel, Op::Create, None, Some(after), Snapshot::False, &txm, lsn, order.as_deref_mut());
                        return Ok(msgs);
                    }
                }
                let before = old_row.filter(|_| matches!(old, Some((b'O', _))));
                // Unchanged TOASTed values: take them from the old row when we have it.
                if let Some(b) = &before {
                    for (i, v) in after.values.iter_mut().enumerate() {
                        if *v == Value::Unchanged {
                            *v = b.values[i].clone();
                        }
                    }
                }
                ctx.event(&mut msgs, &rel, Op::Update, before, Some(after), Snapshot::False, &txm, lsn, order.as_deref_mut());
            }
        }
        LogicalMessage::Delete { xid: sx, oid, old: (_, t) } => {
            let rel = rel_of(oid, "Delete")?;
            if rel.included {
                let before = rel.row(&t, wal_start)?;
                ctx.event(
                    &mut msgs,
                    &rel,
                    Op::Delete,
                    Some(before),
                    None,
                    Snapshot::False,
                    &TxMeta { xid: tx.xid.or(sx.map(|x| x as i64)), ..tx },
                    lsn,
                    order.as_deref_mut(),
                );
            }
        }
        LogicalMessage::Truncate { xid: sx, oids, .. } => {
            for oid in oids {
                if let Some(rel) = rels.get(&oid).filter(|r| r.included).cloned() {
                    let mut out = Vec::new();
                    ctx.event(
                        &mut out,
                        &rel,
                        Op::Truncate,
                        None,
                        None,
                        Snapshot::False,
                        &TxMeta { xid: tx.xid.or(sx.map(|x| x as i64)), ..tx },
                        lsn,
                        order.as_deref_mut(),
                    );
                    for m in &mut out {
                        m.key = tensorcdc_change::Key::None;
                    }
                    msgs.extend(out);
                }
            }
        }
        _ => {}
    }
    Ok(msgs)
}

/// The relations a change message names.
fn oids_of(m: &LogicalMessage) -> Vec<u32> {
    match m {
        LogicalMessage::Insert { oid, .. } | LogicalMessage::Update { oid, .. } | LogicalMessage::Delete { oid, .. } => vec![*oid],
        LogicalMessage::Truncate { oids, .. } => oids.clone(),
        _ => vec![],
    }
}

/// Handles one pgoutput message. Changes of a committed (non-streamed) transaction go to
/// the batch as they come, all but the last: it is held until Commit gives it the
/// transaction's acknowledgement LSN. Changes of a streamed transaction are recorded in
/// its [`SpilledTx`]; its StreamCommit returns a [`Replay`] for the loop to send.
#[allow(clippy::too_many_arguments)]
async fn handle(
    ctx: &Ctx<'_>,
    client: &Client,
    binary: bool,
    m: LogicalMessage,
    raw: &Bytes,
    wal_start: u64,
    st: &mut State,
    batch: &mut Vec<Message>,
    acks: &mut Acks,
) -> Result<Option<Replay>, CaptureError> {
    match m {
        LogicalMessage::Begin { ts, xid, final_lsn } => {
            ctx.stats.lock().expect("stats").last_commit_ms = pg_ts_to_unix_ms(ts);
            st.tx = Some(Tx { xid, final_lsn, ts_us: pg_ts_to_unix_us(ts), order: TxOrder::default(), held: None });
        }
        LogicalMessage::Commit { end_lsn, .. } => {
            let t = st.tx.take();
            let end = t.as_ref().and_then(|t| ctx.tx_end(&t.order, t.xid, end_lsn, t.ts_us));
            let held = t.and_then(|t| t.held);
            ctx.stats.lock().expect("stats").transactions += 1;
            commit(held.into_iter().chain(end).collect(), end_lsn, batch, acks);
            st.last_commit = Some(Lsn(end_lsn));
            // Progress a signal of this transaction made is durable once its end is.
            ctx.incr.lock().expect("incremental").committed(end_lsn, ctx.stats);
        }
        LogicalMessage::Relation { oid, namespace, name, columns, .. } => {
            let included = ctx.cfg.includes(&namespace, &name);
            if ctx.cfg.signals.table() == Some((namespace.as_str(), name.as_str())) {
                ctx.incr.lock().expect("incremental").signal_oid = Some(oid);
            }
            let (cols, pk) = if included {
                let mut cache = ctx.types.lock().await;
                let (catalog, pk) = describe(client, oid, &mut cache).await.unwrap_or_default();
                let mut cols = Vec::with_capacity(columns.len());
                for c in &columns {
                    let ty = cache.resolve(client, c.type_oid, c.type_mod).await.map_err(|e| CaptureError::from_pg("describe column type", e))?;
                    let known = catalog.iter().find(|x| x.name == c.name);
                    cols.push(Column { name: c.name.clone(), ty, notnull: known.is_some_and(|x| x.notnull), default: known.and_then(|x| x.default.clone()) });
                }
                // The primary key only, as Debezium: the relation's key flags are the replica
                // identity, all columns under REPLICA IDENTITY FULL (a keyless table has a null key).
                (cols, pk)
            } else {
                (
                    columns
                        .iter()
                        .map(|c| Column { name: c.name.clone(), ty: PgType::builtin(c.type_oid, c.type_mod), notnull: false, default: None })
                        .collect(),
                    vec![],
                )
            };
            if included && binary {
                if let Some(c) = cols.iter().find(|c| !c.ty.binary_supported()) {
                    // The server sends this column in a binary form we do not read: start
                    // again from the confirmed LSN with text tuples (nothing after it was confirmed).
                    ctx.text_tuples.store(true, Ordering::Relaxed);
                    return Err(CaptureError::Restart(format!(
                        "{namespace}.{name} column {} has type {} without a binary decoder; streaming again with text tuples",
                        c.name, c.ty.name
                    )));
                }
            }
            st.rels.insert(oid, Arc::new(build_rel(ctx.cfg, &namespace, &name, &cols, &pk)));
        }
        LogicalMessage::Insert { .. } | LogicalMessage::Update { .. } | LogicalMessage::Delete { .. } | LogicalMessage::Truncate { .. } => {
            let sub = match &m {
                LogicalMessage::Insert { xid, .. }
                | LogicalMessage::Update { xid, .. }
                | LogicalMessage::Delete { xid, .. }
                | LogicalMessage::Truncate { xid, .. } => *xid,
                _ => None,
            };
            if let (Some(top), Some(sub)) = (st.stream_xid, sub) {
                // In a streamed transaction: record the bytes, decode at commit.
                let mut rels = Vec::new();
                for oid in oids_of(&m) {
                    let rel = st.rels.get(&oid).cloned().ok_or_else(|| CaptureError::Protocol(format!("change for unknown relation {oid}")))?;
                    if rel.included {
                        rels.push((oid, rel));
                    }
                }
                if !rels.is_empty() {
                    let spilled = st.streams.entry(top).or_default();
                    let was_on_disk = spilled.on_disk();
                    spilled.push(&rels, sub, wal_start, raw)?;
                    if spilled.on_disk() && !was_on_disk {
                        ctx.stats.lock().expect("stats").spilled_transactions += 1;
                        info!("streamed transaction {top} passed {} MB: its changes go to a temporary file until it commits", crate::spill::MEMORY_LIMIT >> 20);
                    }
                }
                return Ok(None);
            }
            let (ts_us, xid) = st.tx.as_ref().map_or((now_ns().div_euclid(1000), None), |t| (t.ts_us, Some(t.xid as i64)));
            // A signal (its own event, if the table is captured, goes first).
            let signal = match &m {
                LogicalMessage::Insert { oid, new, .. } if ctx.incr.lock().expect("incremental").signal_oid == Some(*oid) => Some(new.clone()),
                _ => None,
            };
            let mut no_tx = TxOrder::default();
            let order = st.tx.as_mut().map_or(&mut no_tx, |t| &mut t.order);
            let mut msgs = change_events(ctx, &st.rels, m, wal_start, TxMeta { ts_us, xid, last_commit: st.last_commit }, order)?;
            if let Some(tuple) = signal {
                let at = (st.tx.as_ref().map_or(wal_start, |t| t.final_lsn), wal_start);
                crate::incremental::on_signal(ctx, client, &tuple, at, &mut msgs).await?;
            }
            if msgs.is_empty() {
                return Ok(None);
            }
            ctx.stats.lock().expect("stats").streamed_changes += 1;
            match st.tx.as_mut() {
                Some(t) => {
                    for msg in msgs {
                        if let Some(prev) = t.held.replace(msg) {
                            batch.push(prev);
                        }
                    }
                }
                None => batch.extend(msgs),
            }
        }
        LogicalMessage::StreamStart { xid, .. } => st.stream_xid = Some(xid),
        LogicalMessage::StreamStop => st.stream_xid = None,
        LogicalMessage::StreamCommit { xid, end_lsn, ts, .. } => {
            let spilled = st.streams.remove(&xid).unwrap_or_default();
            let mut s = ctx.stats.lock().expect("stats");
            s.transactions += 1;
            s.streamed_transactions += 1;
            s.streamed_changes += spilled.changes;
            drop(s);
            let reader = spilled.into_reader()?;
            let tx = TxMeta { ts_us: pg_ts_to_unix_us(ts), xid: Some(xid as i64), last_commit: st.last_commit };
            st.last_commit = Some(Lsn(end_lsn));
            return Ok(Some(Replay { reader, end_lsn, tx }));
        }
        LogicalMessage::StreamAbort { xid, subxid } => {
            if xid == subxid {
                st.streams.remove(&xid);
            } else if let Some(v) = st.streams.get_mut(&xid) {
                v.abort_sub(subxid);
            }
        }
        LogicalMessage::Origin | LogicalMessage::Type { .. } | LogicalMessage::Message { .. } | LogicalMessage::TwoPhase(_) => {}
    }
    Ok(None)
}

/// Sends a committed streamed transaction: its records decoded in order, in batches of
/// `max.batch.size` (a slow sink holds this back), the last change carrying the
/// transaction's acknowledgement LSN.
#[allow(clippy::too_many_arguments)]
async fn replay(
    ctx: &Ctx<'_>,
    r: Replay,
    sink: &mut dyn Sink,
    repl: &mut ReplicationConn,
    pending: &mut VecDeque<PendingAck>,
    batch: &mut Vec<Message>,
    acks: &mut Acks,
) -> Result<(), CaptureError> {
    let Replay { mut reader, end_lsn, tx } = r;
    let mut order = TxOrder::default();
    // A long replay must still answer the server, or wal_sender_timeout ends the stream.
    let mut last_status = Instant::now();
    let mut rels: HashMap<u32, Arc<Rel>> = HashMap::new();
    let mut held: Option<Message> = None;
    while let Some(rec) = reader.next_record()? {
        match rec {
            Record::SetRel { oid, rel } => {
                rels.insert(oid, rel);
            }
            Record::Data { wal_start, data, .. } => {
                let m = pgoutput::decode(data, true)?;
                for msg in change_events(ctx, &rels, m, wal_start, tx, &mut order)? {
                    if let Some(prev) = held.replace(msg) {
                        batch.push(prev);
                    }
                }
                if batch.len() >= ctx.cfg.max_batch_size {
                    let b = std::mem::take(batch);
                    let n = b.len() as u64;
                    send(ctx, sink, b, pending).await?;
                    ctx.stats.lock().expect("stats").messages += n;
                }
                if last_status.elapsed() >= Duration::from_secs(5) {
                    repl.send_status(acks.confirmed, false).await?;
                    last_status = Instant::now();
                }
            }
        }
    }
    let end = tx.xid.and_then(|x| ctx.tx_end(&order, x as u32, end_lsn, tx.ts_us));
    commit(held.into_iter().chain(end).collect(), end_lsn, batch, acks);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tensorcdc_change::Payload;

    #[test]
    fn acks_wait_for_delivery() {
        let mut a = Acks::default();
        let mut batch = Vec::new();
        let msg = Message { topic: "t".into(), key: tensorcdc_change::Key::None, payload: Payload::Tombstone, ack_lsn: None, commit_ts_ms: 0 };
        commit(vec![msg.clone(), msg], 100, &mut batch, &mut a);
        assert_eq!(batch.iter().map(|m| m.ack_lsn).collect::<Vec<_>>(), vec![None, Some(Lsn(100))]);
        // An empty transaction and a keepalive later: nothing past 0 until 100 is delivered.
        commit(vec![], 200, &mut vec![], &mut a);
        a.idle = a.idle.max(300);
        assert_eq!(a.safe(true), 0);
        a.delivered = 100;
        assert_eq!(a.safe(true), 300);
        assert_eq!(a.safe(false), 100);
    }
}
