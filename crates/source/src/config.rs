//! What to read, as plain data: the CLI's flags and Python's keyword arguments both fill a
//! [`SourceConfig`].

use std::path::PathBuf;
use std::str::FromStr;

use tensorcdc_change::{ChannelSink, Message};
use tensorcdc_dataset::DecodeOptions;
use tensorcdc_postgres::{run_capture, CaptureConfig, CaptureError, CaptureStats, SnapshotMode};

use crate::SourceError;

/// A record that does not decode: skip it (counted, the first five reported) or stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    #[default]
    Skip,
    Fail,
}

impl FromStr for OnError {
    type Err = tensorcdc_change::UnknownName;
    fn from_str(s: &str) -> Result<Self, tensorcdc_change::UnknownName> {
        match s {
            "skip" => Ok(OnError::Skip),
            "fail" => Ok(OnError::Fail),
            o => Err(tensorcdc_change::UnknownName::new("on-error", o, "skip or fail")),
        }
    }
}

/// One source: IDX files (`data`), Kafka (`kafka` + `topics`), or Postgres (`source` URL +
/// `table`).
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// Directory holding the four MNIST IDX files.
    pub data: Option<PathBuf>,
    /// Kafka bootstrap servers.
    pub kafka: Option<String>,
    pub topics: Vec<String>,
    /// Bounded read: one partition (default all) from `offset`.
    pub partition: Option<i32>,
    pub offset: i64,
    /// Bounded read: records from `offset` on that retention removed are an error, not a warning.
    pub strict: bool,
    /// Consumer group of a stream (default "tensorcdc").
    pub group: Option<String>,
    /// A stream ends after this many ms without a record (-1: never; None: the caller's default).
    pub stream_timeout_ms: Option<i64>,
    /// auto.offset.reset of a new group.
    pub auto_offset_reset: String,
    /// librdkafka settings passed through (they win over ours).
    pub kafka_settings: Vec<(String, String)>,
    /// Postgres URL: capture `table` in-process.
    pub source: Option<String>,
    pub table: Option<String>,
    /// The MNIST decoders' format and fields.
    pub decode: DecodeOptions,
    /// A CSV topic's column names (any-table reads); a bounded read can take them from a header line.
    pub columns: Option<Vec<String>>,
    pub on_error: OnError,
    /// At most this many examples (MNIST bounded reads).
    pub limit: Option<usize>,
    /// An in-process stream with a persistent slot of this name instead of a temporary one:
    /// it survives the process, and the stream confirms positions only when its caller says
    /// so ([`crate::Stream::confirm`]), so a restart resumes after the last confirmed one.
    pub slot: Option<String>,
    /// Where that slot's offsets file is kept (default: the capture's state directory).
    pub offset_file: Option<PathBuf>,
    /// Bounded read: how long to wait for the topic to appear (default 60 s).
    pub topic_wait: Option<std::time::Duration>,
    /// In-process: key rows by these columns instead of the primary key (Debezium's
    /// `message.key.columns`; a table without a primary key needs REPLICA IDENTITY FULL).
    pub key_columns: Option<Vec<String>>,
    /// A persistent slot's initial snapshot done incrementally (chunks between watermarks
    /// written to this signal table, `schema.table`): a reconnect or a crash during it goes
    /// on from the last chunk delivered instead of starting over.
    pub signal_table: Option<String>,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            data: None,
            kafka: None,
            topics: Vec::new(),
            partition: None,
            offset: 0,
            strict: false,
            group: None,
            stream_timeout_ms: None,
            auto_offset_reset: "earliest".into(),
            kafka_settings: Vec::new(),
            source: None,
            table: None,
            decode: DecodeOptions::default(),
            columns: None,
            on_error: OnError::Skip,
            limit: None,
            slot: None,
            offset_file: None,
            topic_wait: None,
            key_columns: None,
            signal_table: None,
        }
    }
}

impl SourceConfig {
    /// A Kafka source of `topic` (a bounded read, or a stream when `group` is given).
    pub fn kafka(brokers: &str, topic: &str, group: Option<&str>) -> Self {
        SourceConfig { kafka: Some(brokers.into()), topics: vec![topic.into()], group: group.map(String::from), ..Default::default() }
    }

    /// The capture settings of an in-process read of `table`: a temporary slot named after
    /// the table and this process, publication `tensorcdc_reader`.
    pub fn capture_config(&self, url: &str, table: &str) -> Result<CaptureConfig, SourceError> {
        let mut cfg = CaptureConfig::default();
        cfg.set_connection(url)?;
        cfg.include = tensorcdc_postgres::config::parse_table_list("table.include.list", &format!("public\\.{table}"))?;
        if let Some(cols) = &self.key_columns {
            cfg.message_key_columns = tensorcdc_postgres::config::parse_key_columns("key columns", &format!("public\\.{table}:{}", cols.join(",")))?;
        }
        cfg.slot_name = format!("tensorcdc_{}_{}", table.to_lowercase(), std::process::id());
        cfg.publication_name = "tensorcdc_reader".into();
        // A temporary slot: the server drops it when the connection ends, even after kill -9.
        cfg.temporary_slot = true;
        if let Some(slot) = &self.slot {
            cfg.slot_name.clone_from(slot);
            cfg.temporary_slot = false;
            cfg.offset_file.clone_from(&self.offset_file);
            if let Some(t) = &self.signal_table {
                cfg.signals.set("signal.data.collection", t).map_err(|e| SourceError::Config(e.to_string()))?;
                cfg.signals.initial = true;
                cfg.snapshot_mode = SnapshotMode::Never;
            }
        }
        cfg.status_interval_ms = 1000;
        Ok(cfg)
    }

    /// A snapshot of `table` read in-process: its messages, and the capture to await once the
    /// channel ends. A batch read fails fast (connection refused, no password) instead of
    /// retrying.
    pub fn snapshot(&self, url: &str, table: &str) -> Result<SnapshotRun, SourceError> {
        // Always a temporary slot of its own: an initial_only read drops its slot when done.
        let mut cfg = SourceConfig { slot: None, ..self.clone() }.capture_config(url, table)?;
        cfg.snapshot_mode = SnapshotMode::InitialOnly;
        cfg.errors_max_retries = Some(0);
        let (mut sink, rx) = ChannelSink::new(4096);
        let run = tokio::spawn(async move {
            let (_stop, stop_rx) = tokio::sync::watch::channel(false);
            run_capture(cfg, tensorcdc_postgres::identity(), &mut sink, stop_rx, Default::default()).await
        });
        Ok((rx, run))
    }

    /// The first topic, or an error saying a Kafka source needs one.
    pub(crate) fn topic(&self) -> Result<&str, SourceError> {
        self.topics.first().map(String::as_str).ok_or_else(|| SourceError::Config("a Kafka source needs a topic (--topic T)".into()))
    }
}

/// A snapshot being read: its messages, and the task reading them.
pub type SnapshotRun = (tokio::sync::mpsc::Receiver<Message>, tokio::task::JoinHandle<Result<CaptureStats, CaptureError>>);
