//! Sinks: where messages end up, and how they say a batch is durable.
//!
//! The engine hands a sink batches of messages, each with its own completion handle
//! ([`BatchAck`]), as supabase/etl's `BatchFlushResult`: it carries the batch's LSN (the
//! largest `ack_lsn` of its messages) and belongs to the capture session that sent it. The
//! sink completes it once the batch is durable ([`BatchAck::done`]) or failed
//! ([`BatchAck::failed`]); a handle dropped without either reports the batch lost, so no
//! batch can be forgotten without the session hearing of it. Only LSNs of completed batches
//! are ever confirmed to Postgres, so a crash can repeat messages but never lose one.

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::{Lsn, Message};

/// A sink failure: retryable ones are retried with backoff, permanent ones stop capture.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SinkError {
    #[error("sink temporarily unavailable: {0}")]
    Retryable(String),
    #[error("sink failed: {0}")]
    Permanent(String),
    /// This instance of the sink can deliver nothing more (a Kafka producer's fatal error:
    /// its idempotence sequence broken, fenced), but a new one may: the capture ends the
    /// session, calls [`Sink::reset`] and starts again from the last confirmed LSN.
    #[error("sink must start again: {0}")]
    Fatal(String),
}

/// The completion handle of one batch, given to the sink with it.
#[must_use = "a batch's handle must be completed (done or failed) once the batch is durable"]
pub struct BatchAck {
    lsn: Option<Lsn>,
    session: u64,
    tx: Option<oneshot::Sender<Result<Option<Lsn>, SinkError>>>,
}

/// The engine's half of a [`BatchAck`]: resolves when the sink completes the batch.
pub struct PendingAck {
    pub lsn: Option<Lsn>,
    /// When the batch was handed to the sink.
    pub sent_at: std::time::Instant,
    rx: oneshot::Receiver<Result<Option<Lsn>, SinkError>>,
}

impl BatchAck {
    /// A handle for a batch of `session` whose messages carry `lsn` at most, and the future
    /// the session awaits.
    pub fn new(lsn: Option<Lsn>, session: u64) -> (BatchAck, PendingAck) {
        let (tx, rx) = oneshot::channel();
        (BatchAck { lsn, session, tx: Some(tx) }, PendingAck { lsn, sent_at: std::time::Instant::now(), rx })
    }

    /// The batch's handle for `batch`: its LSN is the largest `ack_lsn` of its messages.
    pub fn for_batch(batch: &[Message], session: u64) -> (BatchAck, PendingAck) {
        BatchAck::new(batch.iter().filter_map(|m| m.ack_lsn).max(), session)
    }

    /// The largest LSN this batch makes safe to confirm, if any.
    pub fn lsn(&self) -> Option<Lsn> {
        self.lsn
    }

    /// The capture session that sent the batch (a new one after each reconnect).
    pub fn session(&self) -> u64 {
        self.session
    }

    /// Every message of the batch is durable. A session that has ended no longer waits: the
    /// next one starts from what was confirmed, so that is not an error.
    pub fn done(mut self) {
        if let Some(tx) = self.tx.take() {
            if tx.send(Ok(self.lsn)).is_err() {
                tracing::debug!("batch of session {} (LSN {:?}) completed after the session ended", self.session, self.lsn);
            }
        }
    }

    /// The batch could not be made durable.
    pub fn failed(mut self, e: SinkError) {
        if let Some(tx) = self.tx.take() {
            let _ended = tx.send(Err(e));
        }
    }
}

impl Drop for BatchAck {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let lost = SinkError::Fatal(format!("the sink dropped a batch (LSN {:?}) without reporting it durable or failed", self.lsn));
            let _ended = tx.send(Err(lost));
        }
    }
}

impl PendingAck {
    /// Waits for the sink's report: the batch's LSN once durable.
    pub async fn wait(&mut self) -> Result<Option<Lsn>, SinkError> {
        (&mut self.rx).await.unwrap_or_else(|_| Err(SinkError::Fatal("a batch's completion handle vanished".into())))
    }

    /// The report if it has come (`None` while the batch is not yet durable).
    pub fn try_take(&mut self) -> Option<Result<Option<Lsn>, SinkError>> {
        match self.rx.try_recv() {
            Ok(r) => Some(r),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(Err(SinkError::Fatal("a batch's completion handle vanished".into()))),
        }
    }
}

/// Where messages go.
#[async_trait::async_trait]
pub trait Sink: Send {
    /// Accepts a batch. Completes `ack` when its messages are durable (or failed); returning
    /// does not mean durable, the handle does.
    async fn send(&mut self, batch: Vec<Message>, ack: BatchAck) -> Result<(), SinkError>;

    /// Waits until everything accepted is durable or failed.
    async fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// A failure the sink learnt of between batches (a fatal producer error, a delivery that
    /// failed): the capture asks every few hundred milliseconds, so it ends (and says why)
    /// instead of waiting for a report that will not come.
    fn health(&self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Seconds after which a batch not yet reported durable means the sink is stalled (a
    /// broker down or paused), said once on stderr, and once more when it delivers again.
    /// `None` for a sink whose reports wait for its consumer by design (`run`'s).
    fn stall_after_secs(&self) -> Option<u64> {
        Some(5)
    }

    /// Replaces what a [`SinkError::Fatal`] broke (a new producer). Messages accepted but
    /// not reported durable are forgotten: the capture sends them again from the last
    /// confirmed LSN. The default cannot start again.
    async fn reset(&mut self) -> Result<(), SinkError> {
        Err(SinkError::Permanent("this sink cannot start again after a fatal error".into()))
    }
}

/// The in-process transport and test fixture: a bounded channel of messages. A message counts
/// as durable once it is in the channel (in-process there is nothing more durable: a crash
/// loses the consumer too, and the slot resends everything not confirmed). The channel is
/// bounded, so a slow consumer holds back the source.
pub struct ChannelSink {
    tx: mpsc::Sender<Message>,
}

impl ChannelSink {
    /// A sink and the receiver other crates consume, with room for `capacity` messages.
    pub fn new(capacity: usize) -> (ChannelSink, mpsc::Receiver<Message>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (ChannelSink { tx }, rx)
    }
}

#[async_trait::async_trait]
impl Sink for ChannelSink {
    async fn send(&mut self, batch: Vec<Message>, ack: BatchAck) -> Result<(), SinkError> {
        for m in batch {
            if self.tx.send(m).await.is_err() {
                let e = SinkError::Permanent("in-process receiver closed".into());
                ack.failed(e.clone());
                return Err(e);
            }
        }
        ack.done();
        Ok(())
    }
}

/// Keeps every message in memory (tests, and tools that read everything at the end).
#[derive(Clone, Default)]
pub struct MemorySink {
    pub messages: Arc<Mutex<Vec<Message>>>,
}

impl MemorySink {
    pub fn take(&self) -> Vec<Message> {
        std::mem::take(&mut *self.messages.lock().expect("not poisoned"))
    }
}

#[async_trait::async_trait]
impl Sink for MemorySink {
    async fn send(&mut self, batch: Vec<Message>, ack: BatchAck) -> Result<(), SinkError> {
        self.messages.lock().expect("not poisoned").extend(batch);
        ack.done();
        Ok(())
    }
}
