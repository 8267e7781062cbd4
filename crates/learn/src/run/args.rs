//! `tensorcdc run`'s flags (each also a key of `--config pipeline.toml`, [`super::config`]).

use std::path::PathBuf;

#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Postgres URL of the table to learn from and serve.
    #[arg(long)]
    pub source: String,
    /// The table to learn from and predict, in the public schema; it needs a primary key (or
    /// --key), which names rows in the buffer and in the predictions table.
    #[arg(long)]
    pub table: String,
    /// The label column: rows where it is NULL are predicted, the others are learnt from.
    #[arg(long)]
    pub label: String,
    /// Key rows by these columns instead of the primary key (Debezium's message.key.columns):
    /// for a table without one, which then needs REPLICA IDENTITY FULL.
    #[arg(long, value_delimiter = ',')]
    pub key: Option<Vec<String>>,
    /// Take the table's first snapshot incrementally, as Debezium's incremental snapshots: in
    /// chunks of 1,024 rows in key order between watermarks written to this signal table
    /// (schema.table; created with Debezium's columns if missing), so a reconnect or a crash
    /// during it goes on from the last chunk delivered instead of reading the table again.
    #[arg(long, value_name = "SCHEMA.TABLE")]
    pub signal_table: Option<String>,
    /// Feature columns (default: every column but the key and the label).
    #[arg(long, value_delimiter = ',')]
    pub features: Option<Vec<String>>,
    /// Names of integer classes 0-9 (digits, fashion for Fashion-MNIST's, or ten names
    /// separated by commas): shown on the live page and written as class_name.
    #[arg(long)]
    pub classes: Option<String>,
    /// Hidden Dense(relu) layers.
    #[arg(long, value_delimiter = ',', default_value = "64,64")]
    pub layers: Vec<usize>,
    /// The versions folder (v000001/, versions.jsonl, serving).
    #[arg(long, default_value = "models")]
    pub out: PathBuf,
    /// Predictions table (default: <table>_predictions), one row per source row key.
    #[arg(long)]
    pub predictions_table: Option<String>,
    /// Also produce each prediction to this Kafka topic (JSON, keyed by row key), on
    /// --predictions-brokers (default: --kafka).
    #[arg(long)]
    pub predictions_topic: Option<String>,
    /// Kafka bootstrap servers (HOST:PORT) for --predictions-topic, when they are not --kafka.
    #[arg(long)]
    pub predictions_brokers: Option<String>,
    /// Train a new version after this many new labelled rows …
    #[arg(long, default_value_t = 200)]
    pub retrain_every: usize,
    /// … or this many seconds after the last version, when any arrived.
    #[arg(long, default_value_t = 30.0)]
    pub retrain_secs: f64,
    /// Keep the checkpoints of this many newest versions, and the serving one; older
    /// checkpoint folders are deleted (their lines stay in versions.jsonl). 0 keeps all.
    #[arg(long, default_value_t = 10)]
    pub keep_versions: usize,
    /// Epochs of the first version (on the snapshot's labelled rows).
    #[arg(long, default_value_t = 5)]
    pub initial_epochs: usize,
    /// Epochs of each later version over the new rows and the replay sample.
    #[arg(long, default_value_t = 2)]
    pub refresh_epochs: usize,
    /// Rows of the buffer replayed with the new ones.
    #[arg(long, default_value_t = 2000)]
    pub replay: usize,
    /// Replay from the this many most recently changed training rows only (0: from all);
    /// under drift, what the table says now.
    #[arg(long, default_value_t = 0)]
    pub replay_window: usize,
    /// Score versions on this many most recently changed held-out rows only (0: on all).
    #[arg(long, default_value_t = 0)]
    pub held_out_window: usize,
    /// Hold at most this many labelled rows for replay and scoring (0: no bound); the rows
    /// changed least recently are let go first, so memory stays flat as the table grows.
    #[arg(long, default_value_t = 200_000)]
    pub buffer_rows: usize,
    /// Percent of the labelled rows (by key hash) held out to score versions.
    #[arg(long, default_value_t = 10)]
    pub held_out_percent: u8,
    /// A version serves when its held-out accuracy is at most this much lower (or its loss
    /// this fraction higher) than the serving version's.
    #[arg(long, default_value_t = 0.0)]
    pub margin: f64,
    /// Adam's learning rate for every version.
    #[arg(long, default_value_t = 0.001)]
    pub learning_rate: f64,
    /// Seed of the first version's weights and of each version's replay sample and shuffle.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// End after this many ms without a change (-1: run until Ctrl-C).
    #[arg(long, default_value_t = -1)]
    pub stream_timeout: i64,
    /// Read the table's change events from Kafka (Debezium JSON, as `tensorcdc capture`
    /// writes them) in a consumer group instead of capturing it: processes of one group share
    /// the topic's partitions. Predictions still go to the table's database (--source).
    #[arg(long)]
    pub kafka: Option<String>,
    /// The topic of the table's change events (with --kafka).
    #[arg(long)]
    pub topic: Option<String>,
    /// The consumer group (with --kafka).
    #[arg(long, default_value = "tensorcdc-run")]
    pub group: String,
    /// librdkafka setting KEY=VALUE, passed through (repeatable).
    #[arg(short = 'X', long = "kafka-setting", value_name = "KEY=VALUE")]
    pub kafka_settings: Vec<String>,
    /// The persistent replication slot (default tensorcdc_run_<table>): a restart resumes
    /// from it.
    #[arg(long)]
    pub slot: Option<String>,
    /// Where `/metrics` is served (port 0: any free port; "off": not served).
    #[arg(long, default_value = "127.0.0.1:9187")]
    pub metrics_addr: String,
}
