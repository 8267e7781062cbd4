//! The flags that name a source (`--data`, `--kafka`/`--topic`/`--group`, `--source`/`--table`)
//! and their translation into the library's [`SourceConfig`]; the reading itself is
//! `tensorcdc-source`'s, shared with the demo and Python.

use std::path::{Path, PathBuf};

use anyhow::Result;
use tensorcdc_dataset::mnist::Split;
use tensorcdc_dataset::{DecodeOptions, Examples};
use tensorcdc_source::{OnError, SourceConfig};

#[derive(clap::Args, Clone, Debug)]
pub struct SourceArgs {
    /// Directory holding the four MNIST IDX files.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Kafka bootstrap servers (HOST:PORT): read --topic from Kafka.
    #[arg(long)]
    pub kafka: Option<String>,
    /// Topic(s) to read, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub topic: Vec<String>,
    /// Bounded read: only this partition (default: all).
    #[arg(long)]
    pub partition: Option<i32>,
    /// Bounded read: first offset.
    #[arg(long, default_value_t = 0)]
    pub offset: i64,
    /// Bounded read: fail when records from --offset on are gone (retention, compaction)
    /// instead of warning and reading what is left.
    #[arg(long)]
    pub strict: bool,
    /// Bounded read: seconds to wait for the topic to appear (it says every 10 s why it waits).
    #[arg(long, default_value_t = 60.0)]
    pub wait_timeout: f64,
    /// Consumer group: stream instead of a bounded read.
    #[arg(long)]
    pub group: Option<String>,
    /// Streaming: stop after this many ms without a record (-1: never).
    #[arg(long)]
    pub stream_timeout: Option<i64>,
    /// Streaming: auto.offset.reset for a new group (earliest or latest).
    #[arg(long, default_value = "earliest")]
    pub auto_offset_reset: String,
    /// librdkafka setting KEY=VALUE, passed through (repeatable).
    #[arg(short = 'X', long = "kafka-setting", value_name = "KEY=VALUE")]
    pub kafka_settings: Vec<String>,
    /// Postgres URL: capture the table in-process instead of reading Kafka.
    #[arg(long)]
    pub source: Option<String>,
    /// Table to capture with --source (default mnist_train for train, mnist_test for evaluate).
    #[arg(long)]
    pub table: Option<String>,
    /// Record format: auto, csv, debezium.
    #[arg(long, default_value = "auto")]
    pub format: String,
    /// CSV topics read with --label: the column names (default: a bounded read takes the
    /// topic's first record as a header line).
    #[arg(long, value_delimiter = ',')]
    pub columns: Option<Vec<String>>,
    /// Field holding the label.
    #[arg(long, default_value = "label")]
    pub label_field: String,
    /// Field holding the 784 pixels.
    #[arg(long, default_value = "pixels")]
    pub features_field: String,
    /// A record that does not decode: skip (counted and reported) or fail.
    #[arg(long, default_value = "skip")]
    pub on_error: String,
    /// Use at most N examples.
    #[arg(long)]
    pub limit: Option<usize>,
}

pub use tensorcdc_source::{Item, Report, Stream};

impl SourceArgs {
    /// The library's settings for these flags.
    pub fn config(&self) -> Result<SourceConfig> {
        Ok(SourceConfig {
            data: self.data.clone(),
            kafka: self.kafka.clone(),
            topics: self.topic.clone(),
            partition: self.partition,
            offset: self.offset,
            strict: self.strict,
            group: self.group.clone(),
            stream_timeout_ms: self.stream_timeout,
            auto_offset_reset: self.auto_offset_reset.clone(),
            kafka_settings: tensorcdc_kafka::settings(&self.kafka_settings)?,
            source: self.source.clone(),
            table: self.table.clone(),
            decode: DecodeOptions {
                format: self.format.parse().map_err(anyhow::Error::msg)?,
                label_field: self.label_field.clone(),
                features_field: self.features_field.clone(),
            },
            columns: self.columns.clone(),
            on_error: self.on_error.parse::<OnError>().map_err(|e| anyhow::anyhow!("--{e}"))?,
            limit: self.limit,
            topic_wait: Some(std::time::Duration::from_secs_f64(self.wait_timeout.max(0.0))),
            ..Default::default()
        })
    }

    /// Everything available now (training, and evaluation without a group).
    pub async fn bounded(&self, split: Split) -> Result<(Examples, Report)> {
        Ok(tensorcdc_source::bounded_examples(&self.config()?, split).await?)
    }

    /// A stream of rows as they arrive.
    pub async fn stream(&self, default_table: &str, default_timeout_ms: i64) -> Result<Stream> {
        Ok(Stream::open(&self.config()?, default_table, default_timeout_ms).await?)
    }
}

/// The checkpoint's version: its folder name and the first bytes of the weights' MD5.
pub fn model_version(dir: &Path) -> String {
    use md5::{Digest, Md5};
    let w = std::fs::read(dir.join("model.bpk")).unwrap_or_default();
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    format!("{name}@{}", &hex::encode(Md5::digest(&w))[..8])
}
