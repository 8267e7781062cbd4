//! The Postgres source: Debezium's job.
//!
//! * [`config`]: Debezium connector properties (`database.*`, `topic.prefix`,
//!   `table.include.list`, `slot.name`, `snapshot.mode`, ...).
//! * [`conn`]: libpq's environment and password file, and connection strings with their
//!   password hidden for printing.
//! * [`tls`]: libpq's `sslmode` with rustls, for the SQL and replication connections.
//! * [`replication`]: our replication connection (startup, auth, CopyBoth stream).
//! * [`pgoutput`]: the pgoutput decoder, protocol versions 1 to 4.
//! * [`types`]: column types from the catalog, values decoded from text and binary forms,
//!   and Debezium's mapping of each type to a Kafka Connect schema and value.
//! * [`engine`]: one capture session after another (retries), the offsets file, and the
//!   acknowledgement rule: an LSN is confirmed only after the sink made it durable;
//!   `catalog` (tables, publication, slot), `snapshot` and `stream` do the parts.
//! * [`incremental`]: incremental snapshots (chunks, watermarks) started by [`signal`]s;
//!   [`offsets`]: what a restart resumes from.
//! * [`load`]: loading MNIST examples into a table (the `mnist load` command).

mod catalog;
pub mod config;
pub mod conn;
pub mod engine;
mod error;
pub mod heartbeat;
pub mod incremental;
pub mod load;
pub mod offsets;
pub mod pgoutput;
pub mod replication;
pub mod signal;
mod snapshot;
mod spill;
mod stream;
pub mod tls;
mod txmeta;
pub mod types;

pub use catalog::{wait_for_slot, SlotWait};
pub use config::{CaptureConfig, PublicationMode, SnapshotMode};
pub use engine::{identity, run_capture, CaptureStats, Transform};
pub use error::{CaptureError, SettingError};
