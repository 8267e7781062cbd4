//! Where `train`, `evaluate`, `predict`, the demo and the Python package read from: MNIST IDX
//! files, a Kafka topic (a bounded read to the high watermark, or a consumer group that
//! streams), or Postgres through an in-process capture (typed change events, no
//! serialisation).
//!
//! Two shapes come out of every source: MNIST [`Example`]s (the blog's preset: 784 bytes and a
//! digit) and [`Change`]s of any table (an upsert of a row's cells, or the delete of a key)
//! for the feature spec. Both go through one batch gatherer ([`Stream::next_with`]).
//!
//! The guarantee this crate keeps: a streamed Kafka batch's offsets are stored only when the
//! caller asks for the next batch or closes the stream, that is after it used the batch
//! (rust-rdkafka's `at_least_once.rs`). An in-process capture uses a temporary slot, which
//! the server drops when the connection ends, even after `kill -9`; or, with
//! [`SourceConfig::slot`], a persistent slot confirmed only up to the LSN its caller passes to
//! [`Stream::confirm`] (`tensorcdc run` confirms what its published versions and written
//! predictions cover).
//!
//! This crate sits above `dataset` because `postgres` depends on `dataset` (binary `COPY`
//! loading of examples), so the stream, which needs both, cannot live in `dataset` itself.

mod bounded;
pub mod clock;
mod config;
mod stream;

pub use bounded::{bounded_examples, bounded_rows, read_topic_into, record_change, record_key, Rows, TopicSet, TopicTable};
pub use config::{OnError, SourceConfig};
pub use stream::{route, Stream};
pub use tensorcdc_dataset::features::Change;
pub use tensorcdc_dataset::Example;

/// What a read saw besides what it returned.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Records (or change events) read.
    pub records: u64,
    /// Records that did not decode and were skipped.
    pub skipped: u64,
}

/// An MNIST example with when its row was committed.
pub struct Item {
    pub example: Example,
    pub commit_ts_ms: Option<i64>,
    /// A row of an in-process capture's snapshot.
    pub snapshot: bool,
}

/// A change of any table from a stream, with where it came from and its commit time.
pub struct ChangeItem {
    pub change: Change,
    /// The topic, partition and offset, or the LSN; `None` for the bare tombstone that only
    /// carries a transaction's `ack_lsn`.
    pub position: Option<tensorcdc_dataset::Position>,
    pub commit_ts_ms: Option<i64>,
    /// In-process: set on the last change of a transaction, the LSN that confirms it (and
    /// everything before it) once the caller has made it durable ([`Stream::confirm`]). The
    /// tombstone that ends a delete's transaction comes as a [`Change::Skip`] carrying it.
    pub ack_lsn: Option<tensorcdc_change::Lsn>,
    /// A row of an in-process capture's snapshot (no transaction to wait for).
    pub snapshot: bool,
}

/// Everything that can stop a read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The settings do not name a usable source.
    #[error("{0}")]
    Config(String),
    /// A record that did not decode, with `on_error = fail`.
    #[error("decoding a record (on-error fail): {0}")]
    Decode(String),
    #[error(transparent)]
    Kafka(#[from] tensorcdc_kafka::KafkaError),
    #[error(transparent)]
    Capture(#[from] tensorcdc_postgres::CaptureError),
    #[error(transparent)]
    Dataset(#[from] tensorcdc_dataset::DatasetError),
    #[error("a reader task stopped: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Counts one bad record: skipped (the first five said on stderr) or the error.
pub(crate) fn bad_record(on_error: OnError, report: &mut Report, reason: impl std::fmt::Display) -> Result<(), SourceError> {
    match on_error {
        OnError::Fail => Err(SourceError::Decode(reason.to_string())),
        OnError::Skip => {
            report.skipped += 1;
            if report.skipped <= 5 {
                eprintln!("skipping record: {reason}");
            }
            Ok(())
        }
    }
}
