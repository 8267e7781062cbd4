//! The shared vocabulary of tensorcdc, with no I/O.
//!
//! * [`ChangeEvent`]: one captured change (op c/u/d/r/t) with `before`, `after` and
//!   [`Source`] metadata, the Debezium envelope.
//! * [`Row`] / [`Field`] / [`Value`]: typed rows that carry their own schema.
//! * [`Message`]: what flows from the source through the transforms to a sink: a topic, a
//!   key and a [`Payload`] (an envelope, an unwrapped row, text, or a tombstone), plus the
//!   LSN that must be acknowledged once the sink made it durable.
//! * [`json`]: the Kafka Connect JSON converter (with and without `schema`) and the string
//!   converter, in both directions.
//! * [`Sink`]: where messages go; the in-memory [`MemorySink`] is both the in-process
//!   transport and a test fixture.

pub mod event;
pub mod json;
pub mod lsn;
pub mod names;
pub mod sink;
pub mod value;

pub use event::{ChangeEvent, Key, Message, Op, Payload, Snapshot, Source, SOURCE_KEY_HEADER};
pub use lsn::Lsn;
pub use names::UnknownName;
pub use sink::{BatchAck, ChannelSink, MemorySink, PendingAck, Sink, SinkError};
pub use value::{Field, FieldType, Logical, Row, Value};

/// The connector version reported in `source.version`.
pub const VERSION: &str = concat!("tensorcdc-", env!("CARGO_PKG_VERSION"));
