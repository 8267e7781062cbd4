//! Where `train`, `evaluate` and `predict` read examples from: MNIST IDX files, a Kafka
//! topic (bounded, or a consumer group that streams), or Postgres through an in-process
//! capture (typed change events, no serialisation).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tensorcdc_change::{ChannelSink, Message};
use tensorcdc_dataset::mnist::{self, Split};
use tensorcdc_dataset::{decode, from_message, DecodeOptions, Example, Examples, KeyedExamples, Position};
use tensorcdc_kafka::{read_bounded, GroupReader};
use tensorcdc_postgres::{run_capture, CaptureConfig, CaptureStats, SnapshotMode};

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

/// What a read saw besides the examples.
#[derive(Debug, Default)]
pub struct Report {
    pub records: u64,
    pub skipped: u64,
}

/// An example with where it came from and when its row was committed.
/// A change of any table from a stream, with where it came from and its commit time.
pub struct ChangeItem {
    pub change: tensorcdc_dataset::features::Change,
    pub position: String,
    pub commit_ts_ms: Option<i64>,
}

pub struct Item {
    pub example: Example,
    pub commit_ts_ms: Option<i64>,
}

impl SourceArgs {
    pub fn decode_options(&self) -> Result<DecodeOptions> {
        Ok(DecodeOptions {
            format: self.format.parse().map_err(anyhow::Error::msg)?,
            label_field: self.label_field.clone(),
            features_field: self.features_field.clone(),
        })
    }

    pub(crate) fn skip_errors(&self) -> Result<bool> {
        match self.on_error.as_str() {
            "skip" => Ok(true),
            "fail" => Ok(false),
            o => bail!("--on-error {o:?}: expected skip or fail"),
        }
    }

    /// Handles one decode result: the example, nothing, or a counted/reported/fatal error.
    fn take(&self, r: Result<Option<Example>, tensorcdc_dataset::DatasetError>, report: &mut Report) -> Result<Option<Example>> {
        report.records += 1;
        match r {
            Ok(e) => Ok(e),
            Err(e) if self.skip_errors()? => {
                report.skipped += 1;
                if report.skipped <= 5 {
                    eprintln!("skipping record: {e}");
                }
                Ok(None)
            }
            Err(e) => Err(e).context("decoding a record (--on-error fail)"),
        }
    }

    fn kafka_extra(&self) -> Result<Vec<(String, String)>> {
        Ok(tensorcdc_kafka::settings(&self.kafka_settings)?)
    }

    pub(crate) fn capture_config(&self, url: &str, table: &str) -> Result<CaptureConfig> {
        let mut cfg = CaptureConfig::default();
        cfg.set_connection(url)?;
        cfg.include = tensorcdc_postgres::config::parse_table_list("table.include.list", &format!("public\\.{table}"))?;
        cfg.slot_name = format!("tensorcdc_{}_{}", table.to_lowercase(), std::process::id());
        cfg.publication_name = "tensorcdc_reader".into();
        // A temporary slot: the server drops it when the connection ends, even after kill -9.
        cfg.temporary_slot = true;
        cfg.status_interval_ms = 1000;
        Ok(cfg)
    }

    /// A snapshot of `table` read in-process: its messages, and the capture to await once
    /// the channel ends. A batch read fails fast (connection refused, no password) instead
    /// of retrying.
    pub(crate) fn snapshot(&self, url: &str, table: &str) -> Result<(tokio::sync::mpsc::Receiver<Message>, tokio::task::JoinHandle<Result<CaptureStats, tensorcdc_postgres::CaptureError>>)> {
        let mut cfg = self.capture_config(url, table)?;
        cfg.snapshot_mode = SnapshotMode::InitialOnly;
        cfg.errors_max_retries = Some(0);
        let (mut sink, rx) = ChannelSink::new(4096);
        let run = tokio::spawn(async move {
            let (_stop, stop_rx) = tokio::sync::watch::channel(false);
            run_capture(cfg, tensorcdc_postgres::identity(), &mut sink, stop_rx, Default::default()).await
        });
        Ok((rx, run))
    }

    fn truncate(&self, ex: Examples) -> Examples {
        match self.limit {
            Some(n) => ex.truncate(n),
            None => ex,
        }
    }

    /// Everything available now (training, and evaluation without a group).
    pub async fn bounded(&self, split: Split) -> Result<(Examples, Report)> {
        let mut report = Report::default();
        if let Some(dir) = &self.data {
            let ex = self.truncate(mnist::load(dir, split)?);
            report.records = ex.len() as u64;
            return Ok((ex, report));
        }
        let opts = self.decode_options()?;
        if let Some(url) = &self.source {
            let table = self.table.clone().unwrap_or_else(|| split.table().into());
            let (mut rx, run) = self.snapshot(url, &table)?;
            let mut ex = Examples::default();
            while let Some(m) = rx.recv().await {
                if let Some(e) = self.take(from_message(&m, &opts), &mut report)? {
                    ex.push(&e);
                }
            }
            run.await??;
            return Ok((self.truncate(ex), report));
        }
        let Some(brokers) = &self.kafka else { bail!("give a source: --data DIR, --kafka HOST:PORT --topic T, or --source postgres://...") };
        let topic = self.topic.first().context("--kafka needs --topic")?.clone();
        let extra = self.kafka_extra()?;
        let (brokers, part, offset, limit, strict) = (brokers.clone(), self.partition, self.offset, self.limit, self.strict);
        let this = self.clone();
        let (ex, report) = tokio::task::spawn_blocking(move || -> Result<(Examples, Report)> {
            // Keyed, as the table: an update replaces its row's example, a delete removes it.
            let mut ex = KeyedExamples::default();
            let mut report = Report::default();
            let mut err = None;
            read_bounded(&brokers, &topic, part, offset, strict, &extra, Duration::from_secs(60), |r| {
                if limit.is_some_and(|n| ex.len() >= n) || err.is_some() {
                    return Ok(());
                }
                let what = Position::Kafka { topic: r.topic.clone(), partition: r.partition, offset: r.offset };
                // A row's key: the MnistToCsv header, or a Debezium JSON key (an object). The
                // blog's CSV records written by Debezium itself are keyed by their label, which
                // names no row: those are appended.
                let key = r.source_key.clone().or_else(|| {
                    r.key.as_deref().filter(|k| k.first() == Some(&b'{')).map(tensorcdc_dataset::decode::key_text)
                });
                match this.take(decode(r.key.as_deref(), r.value.as_deref(), &what, &opts), &mut report) {
                    Ok(Some(mut e)) => {
                        e.key = key;
                        ex.upsert(&e)
                    }
                    Ok(None) => {
                        if let Ok(tensorcdc_dataset::features::Change::Delete(k)) = tensorcdc_dataset::features::cell::change_of_json(r.value.as_deref(), key, &what) {
                            ex.delete(&k);
                        }
                    }
                    Err(e) => err = Some(e),
                }
                Ok(())
            })?;
            if let Some(e) = err {
                return Err(e);
            }
            Ok((ex.into_examples(), report))
        })
        .await??;
        Ok((ex, report))
    }

    /// A stream of examples as rows arrive.
    pub async fn stream(&self, default_table: &str, default_timeout_ms: i64) -> Result<Stream> {
        let timeout_ms = self.stream_timeout.unwrap_or(default_timeout_ms);
        let opts = self.decode_options()?;
        if let Some(url) = &self.source {
            let table = self.table.clone().unwrap_or_else(|| default_table.into());
            let cfg = self.capture_config(url, &table)?;
            let (mut sink, rx) = ChannelSink::new(4096);
            let (stop, stop_rx) = tokio::sync::watch::channel(false);
            let stats = Arc::new(Mutex::new(CaptureStats::default()));
            let st = stats.clone();
            let run = tokio::spawn(async move { run_capture(cfg, tensorcdc_postgres::identity(), &mut sink, stop_rx, st).await });
            return Ok(Stream { inner: Inner::Capture { rx, stop, run: Some(run), stats }, opts: Arc::new(opts), args: Arc::new(self.clone()), timeout_ms, last: Instant::now(), report: Report::default(), unacked: Vec::new() });
        }
        let Some(brokers) = &self.kafka else { bail!("streaming needs --kafka HOST:PORT --topic T --group G, or --source postgres://...") };
        if self.topic.is_empty() {
            bail!("--kafka needs --topic");
        }
        let group = self.group.clone().unwrap_or_else(|| "tensorcdc".into());
        let reader = GroupReader::new(brokers, &self.topic, &group, &self.auto_offset_reset, timeout_ms, &self.kafka_extra()?)?;
        Ok(Stream { inner: Inner::Kafka(reader), opts: Arc::new(opts), args: Arc::new(self.clone()), timeout_ms, last: Instant::now(), report: Report::default(), unacked: Vec::new() })
    }
}

enum Inner {
    Kafka(GroupReader),
    Capture {
        rx: tokio::sync::mpsc::Receiver<Message>,
        stop: tokio::sync::watch::Sender<bool>,
        run: Option<tokio::task::JoinHandle<Result<CaptureStats, tensorcdc_postgres::CaptureError>>>,
        stats: Arc<Mutex<CaptureStats>>,
    },
}

/// Examples as they arrive, in batches.
pub struct Stream {
    inner: Inner,
    /// Shared with the decoders `next_with` calls while it holds the stream (a refcount, not
    /// a copy, per batch).
    opts: Arc<DecodeOptions>,
    args: Arc<SourceArgs>,
    timeout_ms: i64,
    last: Instant,
    pub report: Report,
    /// The last Kafka batch handed out, not yet used.
    unacked: Vec<tensorcdc_kafka::Record>,
}

impl Stream {
    /// The next batch of MNIST examples (up to `max`); `None` when the stream timed out.
    /// Asking for the next batch marks the previous one used: its Kafka offsets may then be
    /// committed.
    pub async fn next_batch(&mut self, max: usize) -> Result<Option<Vec<Item>>> {
        let opts = self.opts.clone();
        let args = self.args.clone();
        self.next_with(
            max,
            |rec, what, report| {
                let res = decode(rec.key.as_deref(), rec.value.as_deref(), what, &opts);
                Ok(args.take(res, report)?.map(|mut e| {
                    e.key = rec.source_key.clone().or_else(|| rec.key.as_deref().map(tensorcdc_dataset::decode::key_text));
                    e.position = Some(what.clone());
                    Item { example: e, commit_ts_ms: rec.timestamp_ms }
                }))
            },
            |m, report| {
                let res = from_message(m, &opts);
                Ok(args.take(res, report)?.map(|mut e| {
                    e.key = m.key.to_text();
                    if let tensorcdc_change::Payload::Envelope(ev) = &m.payload {
                        e.position = ev.source.lsn.map(|l| Position::Lsn(l.0));
                    }
                    Item { example: e, commit_ts_ms: Some(m.commit_ts_ms) }
                }))
            },
        )
        .await
    }

    /// The next batch of changes of any table (an upsert or a delete per record), with
    /// where each came from and its commit time.
    pub async fn next_changes(&mut self, max: usize) -> Result<Option<Vec<ChangeItem>>> {
        let fail = !self.args.skip_errors()?;
        let mut csv = tensorcdc_dataset::features::cell::CsvColumns(self.args.columns.clone());
        self.next_with(
            max,
            |rec, what, report| {
                report.records += 1;
                let key = rec.source_key.clone().or_else(|| rec.key.as_deref().filter(|k| k.first() == Some(&b'{')).map(tensorcdc_dataset::decode::key_text));
                let json = rec.value.as_deref().is_none_or(|v| v.iter().find(|c| !c.is_ascii_whitespace()) == Some(&b'{'));
                let change = if json {
                    tensorcdc_dataset::features::cell::change_of_json(rec.value.as_deref(), key, what)
                } else if csv.0.is_none() {
                    Err(format!("{what}: a CSV record; give its columns with --columns"))
                } else {
                    csv.change(rec.value.as_deref(), key, what).map(|c| c.unwrap_or(tensorcdc_dataset::features::Change::Skip))
                };
                match change {
                    Ok(change) => Ok(Some(ChangeItem { change, position: what.to_string(), commit_ts_ms: rec.timestamp_ms })),
                    Err(e) if fail => bail!(e),
                    Err(e) => {
                        report.skipped += 1;
                        if report.skipped <= 5 {
                            eprintln!("skipping record: {e}");
                        }
                        Ok(None)
                    }
                }
            },
            |m, report| {
                report.records += 1;
                let position = match &m.payload {
                    tensorcdc_change::Payload::Envelope(ev) => ev.source.lsn.map(|l| Position::Lsn(l.0).to_string()).unwrap_or_default(),
                    _ => String::new(),
                };
                Ok(Some(ChangeItem { change: tensorcdc_dataset::features::cell::change_of_message(m), position, commit_ts_ms: Some(m.commit_ts_ms) }))
            },
        )
        .await
    }

    /// The one batch gatherer: Kafka records or in-process messages, each turned into a `T`
    /// (or skipped) by the decoder for its source.
    async fn next_with<T>(
        &mut self,
        max: usize,
        mut from_record: impl FnMut(&tensorcdc_kafka::Record, &Position, &mut Report) -> Result<Option<T>>,
        mut from_msg: impl FnMut(&Message, &mut Report) -> Result<Option<T>>,
    ) -> Result<Option<Vec<T>>> {
        if let Inner::Kafka(r) = &mut self.inner {
            r.done_with(&std::mem::take(&mut self.unacked))?;
        }
        loop {
            let mut items = Vec::new();
            match &mut self.inner {
                Inner::Kafka(r) => {
                    let Some(batch) = r.next_batch(max, Duration::from_millis(5)).await? else { return Ok(None) };
                    for rec in &batch {
                        let what = Position::Kafka { topic: rec.topic.clone(), partition: rec.partition, offset: rec.offset };
                        if let Some(t) = from_record(rec, &what, &mut self.report)? {
                            items.push(t);
                        }
                    }
                    // Offsets are committed once the caller has used the batch (next call or close).
                    self.unacked = batch;
                }
                Inner::Capture { rx, stats, .. } => {
                    let wait = Duration::from_millis(50);
                    match tokio::time::timeout(wait, rx.recv()).await {
                        Ok(Some(m)) => {
                            let mut msgs = vec![m];
                            while msgs.len() < max {
                                match rx.try_recv() {
                                    Ok(m) => msgs.push(m),
                                    Err(_) => break,
                                }
                            }
                            self.last = Instant::now();
                            for m in &msgs {
                                if let Some(t) = from_msg(m, &mut self.report)? {
                                    items.push(t);
                                }
                            }
                        }
                        Ok(None) => return Ok(None),
                        Err(_) => {
                            let streaming = stats.lock().expect("stats").streaming;
                            if !streaming {
                                self.last = Instant::now();
                            }
                            if self.timeout_ms >= 0 && self.last.elapsed() >= Duration::from_millis(self.timeout_ms as u64) {
                                return Ok(None);
                            }
                        }
                    }
                }
            }
            if !items.is_empty() {
                return Ok(Some(items));
            }
        }
    }

    /// Commits consumer offsets / stops the in-process capture (dropping its slot).
    pub async fn close(mut self) -> Result<Report> {
        match &mut self.inner {
            Inner::Kafka(r) => {
                r.done_with(&std::mem::take(&mut self.unacked))?;
                r.commit()?
            }
            Inner::Capture { stop, run, rx, .. } => {
                let _ = stop.send(true);
                rx.close();
                if let Some(h) = run.take() {
                    h.await??;
                }
            }
        }
        Ok(self.report)
    }
}

/// The checkpoint's version: its folder name and the first bytes of the weights' MD5.
pub fn model_version(dir: &Path) -> String {
    use md5::{Digest, Md5};
    let w = std::fs::read(dir.join("model.bpk")).unwrap_or_default();
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    format!("{name}@{}", &hex::encode(Md5::digest(&w))[..8])
}
