//! The Debezium change event envelope and the message that carries it to a sink.

use std::sync::Arc;

use crate::{Lsn, Row};

/// Debezium's `op`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `c`: insert.
    Create,
    /// `u`: update.
    Update,
    /// `d`: delete.
    Delete,
    /// `r`: read by the snapshot.
    Read,
    /// `t`: truncate.
    Truncate,
}

impl Op {
    pub fn code(self) -> &'static str {
        match self {
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Read => "r",
            Op::Truncate => "t",
        }
    }

    pub fn from_code(s: &str) -> Option<Op> {
        Some(match s {
            "c" => Op::Create,
            "u" => Op::Update,
            "d" => Op::Delete,
            "r" => Op::Read,
            "t" => Op::Truncate,
            _ => return None,
        })
    }
}

/// `source.snapshot`. Debezium 3 marks the first row of a snapshot `first`, the first and
/// last rows of each further table `first_in_data_collection` / `last_in_data_collection`,
/// the very last row `last` and the rest `true`; streamed changes are `false`, rows of an
/// incremental snapshot `incremental`. (Debezium 2 wrote only `true`, `last` and `false`:
/// [`Snapshot::as_str_v2`].)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snapshot {
    False,
    True,
    First,
    FirstInDataCollection,
    LastInDataCollection,
    Last,
    Incremental,
}

impl Snapshot {
    pub fn as_str(self) -> &'static str {
        match self {
            Snapshot::False => "false",
            Snapshot::True => "true",
            Snapshot::First => "first",
            Snapshot::FirstInDataCollection => "first_in_data_collection",
            Snapshot::LastInDataCollection => "last_in_data_collection",
            Snapshot::Last => "last",
            Snapshot::Incremental => "incremental",
        }
    }

    /// The marker as Debezium 2 wrote it (`true`, `last`, `false`, `incremental`).
    pub fn as_str_v2(self) -> &'static str {
        match self {
            Snapshot::First | Snapshot::FirstInDataCollection | Snapshot::LastInDataCollection => "true",
            other => other.as_str(),
        }
    }

    /// Debezium's rule for a row of a snapshot (`RelationalSnapshotChangeEventSource`): the
    /// last row of the last table is `last`, the first row of the first table `first`, then
    /// the last and first rows of each table, `true` for the others.
    pub fn of_row(first_table: bool, last_table: bool, first_in_table: bool, last_in_table: bool) -> Snapshot {
        if last_in_table && last_table {
            Snapshot::Last
        } else if first_in_table && first_table {
            Snapshot::First
        } else if last_in_table {
            Snapshot::LastInDataCollection
        } else if first_in_table {
            Snapshot::FirstInDataCollection
        } else {
            Snapshot::True
        }
    }

    pub fn parse(s: &str) -> Option<Snapshot> {
        Some(match s {
            "false" => Snapshot::False,
            "true" => Snapshot::True,
            "first" => Snapshot::First,
            "first_in_data_collection" => Snapshot::FirstInDataCollection,
            "last_in_data_collection" => Snapshot::LastInDataCollection,
            "last" => Snapshot::Last,
            "incremental" => Snapshot::Incremental,
            _ => return None,
        })
    }
}

/// Debezium's `source` block for the Postgres connector.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// `topic.prefix`, reported as `name`.
    pub name: Arc<str>,
    /// Commit time of the transaction (snapshot: time of the read), ms since the epoch.
    pub ts_ms: i64,
    /// The same time in microseconds (Debezium 3's `ts_us`; `ts_ns` is it times 1000).
    pub ts_us: i64,
    pub snapshot: Snapshot,
    pub db: Arc<str>,
    pub schema: Arc<str>,
    pub table: Arc<str>,
    pub tx_id: Option<i64>,
    /// LSN of the change (for the snapshot, the LSN it is consistent at).
    pub lsn: Option<Lsn>,
    /// The end LSN of the last transaction committed before this one in the session, the
    /// first half of `sequence` (`[last commit, lsn]`); `None` before the first commit.
    pub last_commit_lsn: Option<Lsn>,
}

/// One captured change, before any transform.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEvent {
    pub op: Op,
    pub before: Option<Row>,
    pub after: Option<Row>,
    pub source: Source,
    /// When tensorcdc processed the event, ms since the epoch.
    pub ts_ms: i64,
    /// The same time in nanoseconds (Debezium 3's `ts_ns`; `ts_us` is it over 1000).
    pub ts_ns: i64,
    /// The primary key (or replica identity) columns of the row.
    pub key: Option<Row>,
    /// The table's fields when the event has no row (a truncate), for its value schema.
    pub fields: Option<Arc<Vec<crate::Field>>>,
    /// The `transaction` block (`provide.transaction.metadata`).
    pub transaction: Option<TxBlock>,
}

/// Debezium's `transaction` block of a change event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxBlock {
    /// `<txId>:<LSN>`.
    pub id: String,
    /// The event's place in its transaction, from 1.
    pub total_order: i64,
    /// The event's place among its table's events in the transaction, from 1.
    pub data_collection_order: i64,
}

/// What a message carries.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // the envelope is the common case: no box per event
pub enum Payload {
    /// The full Debezium envelope.
    Envelope(ChangeEvent),
    /// A flat row (after `unwrap`).
    Row(Row),
    /// A text value (the string converter; `mnist-csv` writes the CSV here).
    Text(String),
    /// A null value: Kafka's deletion marker.
    Tombstone,
}

/// The key of a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Key {
    None,
    Row(Row),
    Text(String),
    /// A key a transform computed (the blog's MnistToCsv puts the label there), written as
    /// the record key; the row's own key is kept in `source` (the Kafka sink writes it in
    /// the record header [`SOURCE_KEY_HEADER`]) so predictions are keyed by the row.
    Derived {
        text: String,
        source: Row,
    },
}

/// The record header that carries the source row's key (as [`Key::to_text`] gives it) when
/// a transform replaced the record key.
pub const SOURCE_KEY_HEADER: &str = "tensorcdc.key";

impl Key {
    /// The key as text: a text key as is, a one-column row key as its value (the row id),
    /// a several-column key as its values joined by commas; for a derived key, the row's.
    /// A value other than text or an integer is written as its Debezium JSON is (a decimal's
    /// base64 bytes, a float's number), so a key reads the same in-process and from a Kafka
    /// record's key (`dataset::decode::key_text`).
    pub fn to_text(&self) -> Option<String> {
        match self {
            Key::None => None,
            Key::Text(t) => Some(t.clone()),
            Key::Derived { source: r, .. } | Key::Row(r) => {
                let parts: Vec<String> = r
                    .values
                    .iter()
                    .zip(r.fields.iter())
                    .map(|(v, f)| match v {
                        crate::Value::String(s) => s.clone(),
                        other => other.as_i64().map(|i| i.to_string()).unwrap_or_else(|| {
                            let j = crate::json::value_json_of(other, Some(f), crate::json::BinaryMode::Bytes);
                            j.as_str().map_or_else(|| j.to_string(), str::to_string)
                        }),
                    })
                    .collect();
                Some(parts.join(","))
            }
        }
    }
}

/// What flows from the source to a sink.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub topic: String,
    pub key: Key,
    pub payload: Payload,
    /// The WAL position that may be acknowledged once this message is durable (for a
    /// streamed change, the commit LSN of its transaction; snapshot rows carry none).
    pub ack_lsn: Option<Lsn>,
    /// Commit time, ms since the epoch (for latency).
    pub commit_ts_ms: i64,
}

impl Message {
    /// The message for a change event, on topic `<prefix>.<schema>.<table>`.
    pub fn from_event(event: ChangeEvent, ack_lsn: Option<Lsn>) -> Message {
        let topic = format!("{}.{}.{}", event.source.name, event.source.schema, event.source.table);
        let key = match &event.key {
            Some(k) => Key::Row(k.clone()),
            None => Key::None,
        };
        let commit_ts_ms = event.source.ts_ms;
        Message { topic, key, payload: Payload::Envelope(event), ack_lsn, commit_ts_ms }
    }
}
