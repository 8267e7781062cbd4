//! Sinks: where messages end up, and how they say a message is durable.
//!
//! The engine hands a sink batches of messages; a sink reports, through [`Delivered`], the
//! highest LSN whose messages (and all before them) it has made durable. Only that LSN is
//! ever confirmed to Postgres, so a crash can repeat messages but never lose one.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::{Lsn, Message};

/// A sink failure: retryable ones are retried with backoff, permanent ones stop capture.
#[derive(Debug, thiserror::Error)]
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

/// Durability reports from a sink to the engine.
pub type Delivered = mpsc::UnboundedSender<Lsn>;

/// Where messages go.
#[async_trait::async_trait]
pub trait Sink: Send {
    /// Accepts a batch. When its messages are durable, sends on `delivered` the largest
    /// `ack_lsn` of the batch (or of any earlier batch) that is safe to confirm. Returning
    /// does not mean durable; the report does.
    async fn send(&mut self, batch: Vec<Message>, delivered: &Delivered) -> Result<(), SinkError>;

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

    /// Replaces what a [`SinkError::Fatal`] broke (a new producer). Messages accepted but
    /// not reported durable are forgotten: the capture sends them again from the last
    /// confirmed LSN. The default cannot start again.
    async fn reset(&mut self) -> Result<(), SinkError> {
        Err(SinkError::Permanent("this sink cannot start again after a fatal error".into()))
    }
}

fn max_lsn(batch: &[Message]) -> Option<Lsn> {
    batch.iter().filter_map(|m| m.ack_lsn).max()
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
    async fn send(&mut self, batch: Vec<Message>, delivered: &Delivered) -> Result<(), SinkError> {
        let lsn = max_lsn(&batch);
        for m in batch {
            self.tx.send(m).await.map_err(|_| SinkError::Permanent("in-process receiver closed".into()))?;
        }
        if let Some(l) = lsn {
            let _ = delivered.send(l);
        }
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
    async fn send(&mut self, batch: Vec<Message>, delivered: &Delivered) -> Result<(), SinkError> {
        let lsn = max_lsn(&batch);
        self.messages.lock().expect("not poisoned").extend(batch);
        if let Some(l) = lsn {
            let _ = delivered.send(l);
        }
        Ok(())
    }
}
