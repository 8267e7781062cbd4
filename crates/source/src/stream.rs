//! Streams: rows as they commit, from a Kafka consumer group or an in-process capture, in
//! batches. One gatherer ([`Stream::next_with`]) serves MNIST examples and any-table changes.
//!
//! Offsets: a Kafka batch is marked used when the caller asks for the next batch or closes
//! the stream; only then are its offsets stored (and committed on close or by the consumer's
//! interval). A crash therefore re-delivers the batch in hand, never skips it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tensorcdc_change::{BatchAck, ChannelSink, Lsn, Message, Payload, Sink, SinkError};
use tensorcdc_dataset::decode::key_text;
use tensorcdc_dataset::features::cell::{change_of_message, CsvColumns};
use tensorcdc_dataset::{decode, from_message, Position};
use tensorcdc_kafka::{GroupReader, Record};
use tensorcdc_postgres::{run_capture, CaptureError, CaptureStats};
use tokio::sync::mpsc;

use crate::{bad_record, record_change, ChangeItem, Item, Report, SourceConfig, SourceError};

#[allow(clippy::large_enum_variant)] // one per stream
enum Inner {
    Kafka(GroupReader),
    /// In-process messages: from a capture this stream owns (`own`), or from one it shares
    /// (the demo's one capture of three tables, split by [`route`]).
    Capture {
        rx: mpsc::Receiver<Message>,
        own: Option<Owned>,
        stats: Arc<Mutex<CaptureStats>>,
    },
}

struct Owned {
    stop: tokio::sync::watch::Sender<bool>,
    run: tokio::task::JoinHandle<Result<CaptureStats, CaptureError>>,
}

/// Rows as they arrive, in batches.
pub struct Stream {
    inner: Inner,
    cfg: Arc<SourceConfig>,
    timeout_ms: i64,
    last: Instant,
    pub report: Report,
    /// The last Kafka batch handed out, not yet used.
    unacked: Vec<Record>,
    /// A persistent slot's confirmations, made by the caller.
    acker: Option<Acker>,
    /// The snapshot's last row has been handed out.
    snapshot_read: bool,
    /// The largest acknowledgement LSN handed out (an incremental snapshot is read whole once
    /// it passes the commit that carried its last rows).
    handed_lsn: u64,
    /// In-process messages received so far, and whether the last batch began a new capture
    /// session.
    received: u64,
    restarted: bool,
}

/// The in-process sink of a persistent slot: a batch counts as delivered only when the
/// consumer confirms its LSN ([`Stream::confirm`]), not when it enters the channel. Its
/// completion handles wait here, in order, until then.
struct HeldSink {
    tx: mpsc::Sender<Message>,
    held: Arc<Mutex<Held>>,
    /// Messages put in the channel so far.
    sent: u64,
    restarts: Restarts,
}

/// The handles of the batches in the channel, of the current capture session.
#[derive(Default)]
struct Held {
    session: Option<u64>,
    acks: std::collections::VecDeque<BatchAck>,
}

/// Where in the channel each capture session after the first begins (the number of messages
/// before its first), oldest first.
type Restarts = Arc<Mutex<std::collections::VecDeque<u64>>>;

/// The consumer's half of a [`HeldSink`].
#[derive(Clone)]
struct Acker(Arc<Mutex<Held>>, Restarts);

impl Acker {
    /// Completes every held batch whose LSN is `lsn` or less (and the batches without an LSN
    /// before them: parts of those transactions).
    fn confirm(&self, lsn: Lsn) {
        let mut h = self.0.lock().expect("acker");
        while h.acks.front().is_some_and(|a| a.lsn().is_none_or(|l| l <= lsn)) {
            if let Some(a) = h.acks.pop_front() {
                a.done();
            }
        }
    }
}

impl HeldSink {
    fn new(capacity: usize) -> (HeldSink, mpsc::Receiver<Message>, Acker) {
        let (tx, rx) = mpsc::channel(capacity);
        let (held, restarts) = (Arc::new(Mutex::new(Held::default())), Restarts::default());
        (HeldSink { tx, held: held.clone(), sent: 0, restarts: restarts.clone() }, rx, Acker(held, restarts))
    }
}

#[async_trait::async_trait]
impl Sink for HeldSink {
    async fn send(&mut self, batch: Vec<Message>, ack: BatchAck) -> Result<(), SinkError> {
        // A new capture session (a reconnect) sends again what was not confirmed, from a
        // transaction's start: the reader learns where it begins (`Stream::take_restarted`).
        // The old session's handles go: nobody waits for them.
        {
            let mut h = self.held.lock().expect("acker");
            if h.session.is_some_and(|s| s != ack.session()) {
                self.restarts.lock().expect("restarts").push_back(self.sent);
                h.acks.clear();
            }
            h.session = Some(ack.session());
        }
        for m in batch {
            if self.tx.send(m).await.is_err() {
                let e = SinkError::Permanent("in-process receiver closed".into());
                ack.failed(e.clone());
                return Err(e);
            }
            self.sent += 1;
        }
        self.held.lock().expect("acker").acks.push_back(ack);
        Ok(())
    }

    fn stall_after_secs(&self) -> Option<u64> {
        None
    }
}

impl Stream {
    /// A stream of `cfg`'s source: a consumer group on its topics, or an in-process capture
    /// of its table (default `default_table`) with a temporary slot. It ends after
    /// `stream_timeout_ms` (default `default_timeout_ms`; -1 never) without a row, not
    /// counting the time a capture spends on its snapshot.
    pub async fn open(cfg: &SourceConfig, default_table: &str, default_timeout_ms: i64) -> Result<Stream, SourceError> {
        let timeout_ms = cfg.stream_timeout_ms.unwrap_or(default_timeout_ms);
        if let Some(url) = &cfg.source {
            let table = cfg.table.clone().unwrap_or_else(|| default_table.into());
            let capture = cfg.capture_config(url, &table)?;
            let (stop, stop_rx) = tokio::sync::watch::channel(false);
            let stats = Arc::new(Mutex::new(CaptureStats::default()));
            let st = stats.clone();
            let (run, rx, acker) = if cfg.slot.is_some() {
                let (mut sink, rx, acker) = HeldSink::new(4096);
                (tokio::spawn(async move { run_capture(capture, tensorcdc_postgres::identity(), &mut sink, stop_rx, st).await }), rx, Some(acker))
            } else {
                let (mut sink, rx) = ChannelSink::new(4096);
                (tokio::spawn(async move { run_capture(capture, tensorcdc_postgres::identity(), &mut sink, stop_rx, st).await }), rx, None)
            };
            let mut s = Stream::new(Inner::Capture { rx, own: Some(Owned { stop, run }), stats }, cfg, timeout_ms);
            s.acker = acker;
            return Ok(s);
        }
        let Some(brokers) = &cfg.kafka else {
            return Err(SourceError::Config("streaming needs --kafka HOST:PORT --topic T --group G, or --source postgres://...".into()));
        };
        cfg.topic()?;
        let group = cfg.group.clone().unwrap_or_else(|| "tensorcdc".into());
        let reader = GroupReader::new(brokers, &cfg.topics, &group, &cfg.auto_offset_reset, timeout_ms, &cfg.kafka_settings)?;
        Ok(Stream::new(Inner::Kafka(reader), cfg, timeout_ms))
    }

    /// A stream over in-process messages of a capture someone else runs (`stats` tells
    /// whether it is still in its snapshot).
    pub fn from_channel(rx: mpsc::Receiver<Message>, stats: Arc<Mutex<CaptureStats>>, cfg: &SourceConfig, timeout_ms: i64) -> Stream {
        Stream::new(Inner::Capture { rx, own: None, stats }, cfg, timeout_ms)
    }

    fn new(inner: Inner, cfg: &SourceConfig, timeout_ms: i64) -> Stream {
        Stream {
            inner,
            cfg: Arc::new(cfg.clone()),
            timeout_ms,
            last: Instant::now(),
            report: Report::default(),
            unacked: Vec::new(),
            acker: None,
            snapshot_read: false,
            handed_lsn: 0,
            received: 0,
            restarted: false,
        }
    }

    /// With a persistent slot ([`SourceConfig::slot`]): everything up to `lsn` (a
    /// [`ChangeItem::ack_lsn`]) is durable on the caller's side, and the slot may move past
    /// it. Without one, positions are confirmed as messages are handed out and this does
    /// nothing.
    pub fn confirm(&self, lsn: Lsn) {
        if let Some(a) = &self.acker {
            a.confirm(lsn);
        }
    }

    /// True once for the batch that begins a new capture session of a persistent slot (the
    /// capture reconnected): the session sends again, from its start, every transaction not
    /// confirmed, so a caller gathering whole transactions drops the one it had open.
    pub fn take_restarted(&mut self) -> bool {
        std::mem::take(&mut self.restarted)
    }

    /// The in-process capture's slot position: the LSN confirmed to the server and the bytes
    /// of WAL between it and the server's last reported end (what the slot holds). `None`
    /// for a Kafka stream.
    pub fn slot_position(&self) -> Option<(tensorcdc_change::Lsn, u64)> {
        match &self.inner {
            Inner::Kafka(_) => None,
            Inner::Capture { stats, .. } => {
                let st = stats.lock().expect("capture stats");
                Some((st.confirmed_lsn, st.server_wal_end.0.saturating_sub(st.confirmed_lsn.0)))
            }
        }
    }

    /// False until an in-process capture's snapshot has been handed out whole: its last row
    /// read from this stream (or no snapshot taken; an incremental one: its last chunk) and
    /// the capture streaming. A Kafka
    /// stream: once the group has handed out what its partitions held when it joined
    /// ([`GroupReader::caught_up`]).
    pub fn streaming(&mut self) -> bool {
        match &mut self.inner {
            Inner::Kafka(r) => r.caught_up(),
            Inner::Capture { stats, .. } => {
                let st = stats.lock().expect("capture stats");
                // An incremental initial snapshot: every chunk emitted has been handed out.
                let incremental_done = st.incremental_table.is_none() && st.incremental_done_at.is_none_or(|l| self.handed_lsn >= l.0);
                st.streaming && (st.snapshot_rows == 0 || self.snapshot_read) && incremental_done
            }
        }
    }

    /// Changes how long an in-process stream waits for a row before it ends (-1: never).
    pub fn set_timeout_ms(&mut self, ms: i64) {
        self.timeout_ms = ms;
        self.last = Instant::now();
    }

    /// The next batch of MNIST examples (up to `max`); `None` when the stream timed out.
    /// Asking for the next batch marks the previous one used: its Kafka offsets may then be
    /// committed.
    pub async fn next_batch(&mut self, max: usize) -> Result<Option<Vec<Item>>, SourceError> {
        let cfg = self.cfg.clone();
        self.next_with(
            max,
            |rec, report| {
                report.records += 1;
                let what = Position::Kafka { topic: rec.topic.clone(), partition: rec.partition, offset: rec.offset };
                match decode(rec.key.as_deref(), rec.value.as_deref(), &what, &cfg.decode) {
                    Ok(e) => Ok(e.map(|mut e| {
                        e.key = rec.source_key.clone().or_else(|| rec.key.as_deref().map(key_text));
                        e.position = Some(what);
                        Item { example: e, commit_ts_ms: rec.timestamp_ms, snapshot: false }
                    })),
                    Err(e) => bad_record(cfg.on_error, report, e.to_string()).map(|_| None),
                }
            },
            |m, report| {
                report.records += 1;
                match from_message(m, &cfg.decode) {
                    Ok(e) => Ok(e.map(|mut e| {
                        e.key = m.key.to_text();
                        let mut snapshot = false;
                        if let Payload::Envelope(ev) = &m.payload {
                            e.position = ev.source.lsn.map(Position::Lsn);
                            snapshot = ev.source.snapshot != tensorcdc_change::Snapshot::False;
                        }
                        Item { example: e, commit_ts_ms: Some(m.commit_ts_ms), snapshot }
                    })),
                    Err(e) => bad_record(cfg.on_error, report, e.to_string()).map(|_| None),
                }
            },
        )
        .await
    }

    /// The next batch of changes of any table (an upsert or a delete per record), with where
    /// each came from and its commit time.
    pub async fn next_changes(&mut self, max: usize) -> Result<Option<Vec<ChangeItem>>, SourceError> {
        let cfg = self.cfg.clone();
        let mut csv = CsvColumns(cfg.columns.clone());
        self.next_with(
            max,
            |rec, report| {
                report.records += 1;
                match record_change(rec, &mut csv, false) {
                    Ok(change) => Ok(Some(ChangeItem {
                        change: change.unwrap_or(tensorcdc_dataset::features::Change::Skip),
                        position: Some(Position::Kafka { topic: rec.topic.clone(), partition: rec.partition, offset: rec.offset }),
                        commit_ts_ms: rec.timestamp_ms,
                        ack_lsn: None,
                        snapshot: false,
                    })),
                    Err(e) => bad_record(cfg.on_error, report, e).map(|_| None),
                }
            },
            |m, report| {
                report.records += 1;
                let ack_lsn = m.ack_lsn;
                // In-process events are whole envelopes: a delete event always comes before
                // its tombstone (Kafka's compaction marker), which adds nothing here but may
                // end the transaction.
                if matches!(m.payload, Payload::Tombstone) {
                    let change = tensorcdc_dataset::features::Change::Skip;
                    return Ok(ack_lsn.map(|_| ChangeItem { change, position: None, commit_ts_ms: Some(m.commit_ts_ms), ack_lsn, snapshot: false }));
                }
                let (position, snapshot) = match &m.payload {
                    Payload::Envelope(ev) => (ev.source.lsn.map(Position::Lsn), ev.source.snapshot != tensorcdc_change::Snapshot::False),
                    _ => (None, false),
                };
                Ok(Some(ChangeItem { change: change_of_message(m), position, commit_ts_ms: Some(m.commit_ts_ms), ack_lsn, snapshot }))
            },
        )
        .await
    }

    /// The one batch gatherer: Kafka records or in-process messages, each turned into a `T`
    /// (or skipped) by the decoder for its source. Returns at least one item, or `None` when
    /// the stream ended.
    pub async fn next_with<T>(
        &mut self,
        max: usize,
        mut from_record: impl FnMut(&Record, &mut Report) -> Result<Option<T>, SourceError>,
        mut from_msg: impl FnMut(&Message, &mut Report) -> Result<Option<T>, SourceError>,
    ) -> Result<Option<Vec<T>>, SourceError> {
        if let Inner::Kafka(r) = &mut self.inner {
            r.done_with(&std::mem::take(&mut self.unacked))?;
        }
        loop {
            let mut items = Vec::new();
            match &mut self.inner {
                Inner::Kafka(r) => {
                    let Some(batch) = r.next_batch(max, Duration::from_millis(5)).await? else {
                        return Ok(None);
                    };
                    for rec in &batch {
                        items.extend(from_record(rec, &mut self.report)?);
                    }
                    // Offsets are stored once the caller has used the batch (next call or close).
                    self.unacked = batch;
                }
                Inner::Capture { rx, stats, .. } => {
                    match tokio::time::timeout(Duration::from_millis(50), rx.recv()).await {
                        Ok(Some(m)) => {
                            // A batch never spans two capture sessions: one that begins a
                            // new session is flagged (`take_restarted`).
                            let restarts = self.acker.as_ref().map(|a| a.1.clone()).unwrap_or_default();
                            let mut restarts = restarts.lock().expect("restarts");
                            if restarts.front() == Some(&self.received) {
                                restarts.pop_front();
                                self.restarted = true;
                            }
                            let mut msgs = vec![m];
                            while msgs.len() < max && restarts.front() != Some(&(self.received + msgs.len() as u64)) {
                                match rx.try_recv() {
                                    Ok(m) => msgs.push(m),
                                    Err(_) => break,
                                }
                            }
                            drop(restarts);
                            self.received += msgs.len() as u64;
                            self.last = Instant::now();
                            let last = |m: &Message| matches!(&m.payload, Payload::Envelope(ev) if ev.source.snapshot == tensorcdc_change::Snapshot::Last);
                            self.snapshot_read |= msgs.iter().any(last);
                            self.handed_lsn = msgs.iter().filter_map(|m| m.ack_lsn).map(|l| l.0).fold(self.handed_lsn, u64::max);
                            for m in &msgs {
                                items.extend(from_msg(m, &mut self.report)?);
                            }
                        }
                        Ok(None) => return Ok(None),
                        Err(_) => {
                            // The snapshot of a large table can take longer than the timeout.
                            if !stats.lock().expect("capture stats").streaming {
                                self.last = Instant::now();
                            }
                            if self.timeout_ms >= 0 && self.last.elapsed() >= Duration::from_millis(self.timeout_ms as u64) {
                                return Ok(None);
                            }
                        }
                    }
                }
            }
            if !items.is_empty() {
                return Ok(Some(items));
            }
        }
    }

    /// Commits consumer offsets / stops the in-process capture this stream owns (dropping its
    /// slot).
    pub async fn close(mut self) -> Result<Report, SourceError> {
        match &mut self.inner {
            Inner::Kafka(r) => {
                r.done_with(&std::mem::take(&mut self.unacked))?;
                r.commit()?
            }
            Inner::Capture { own, rx, .. } => {
                rx.close();
                if let Some(o) = own.take() {
                    let _ = o.stop.send(true);
                    o.run.await??;
                }
            }
        }
        Ok(self.report)
    }
}

/// Splits one capture's messages by table: one receiver per topic suffix (`.mnist_train`,
/// …), in the order given; messages of other topics are dropped. A receiver that was closed
/// or dropped no longer holds the others back.
pub fn route(mut rx: mpsc::Receiver<Message>, suffixes: &[&str], capacity: usize) -> Vec<mpsc::Receiver<Message>> {
    let (txs, rxs): (Vec<_>, Vec<_>) = suffixes.iter().map(|_| mpsc::channel(capacity)).unzip();
    let suffixes: Vec<String> = suffixes.iter().map(|s| s.to_string()).collect();
    tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if let Some(i) = suffixes.iter().position(|s| m.topic.ends_with(s.as_str())) {
                let _ = txs[i].send(m).await;
            }
        }
    });
    rxs
}
