//! The Postgres source: Debezium's job.
//!
//! * [`config`]: Debezium connector properties (`database.*`, `topic.prefix`,
//!   `table.include.list`, `slot.name`, `snapshot.mode`, ...).
//! * [`replication`]: our replication connection (startup, auth, CopyBoth stream).
//! * [`pgoutput`]: the pgoutput decoder, protocol versions 1 to 4.
//! * [`types`]: column values by type OID, text and binary.
//! * [`engine`]: publication and slot lifecycle, the consistent snapshot, the stream, and
//!   the acknowledgement rule: an LSN is confirmed only after the sink made it durable.
//! * [`load`]: loading MNIST examples into a table (the `mnist load` command).

pub mod config;
pub mod engine;
mod error;
pub mod load;
pub mod pgoutput;
pub mod replication;
pub mod types;

pub use config::{CaptureConfig, PublicationMode, SnapshotMode};
pub use engine::{identity, run_capture, CaptureStats, Transform};
pub use error::CaptureError;
