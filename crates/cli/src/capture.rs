//! `tensorcdc capture`: the Debezium connector's job from the command line.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use tensorcdc_change::Sink;
use tensorcdc_postgres::{run_capture, CaptureConfig, CaptureStats, Transform};
use tensorcdc_transforms::Chain;

use crate::sinks::LineSink;

#[derive(clap::Args, Clone, Default)]
pub struct CaptureArgs {
    /// A Debezium connector registration file (register-postgres.json), used as-is.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Postgres connection URL (postgres://user:pass@host:port/db); overrides database.* keys.
    #[arg(long)]
    pub postgres: Option<String>,
    /// topic.prefix
    #[arg(long)]
    pub topic_prefix: Option<String>,
    /// table.include.list: comma-separated regexes over schema.table.
    #[arg(long)]
    pub table_include_list: Option<String>,
    /// slot.name
    #[arg(long)]
    pub slot_name: Option<String>,
    /// snapshot.mode: initial, never (no_data), initial_only, always, when_needed. Incremental
    /// snapshots are started by signals (--set signal.data.collection=schema.table).
    #[arg(long)]
    pub snapshot_mode: Option<String>,
    /// Transforms in order: unwrap, mnist-csv, filter (each may be configured with --set transforms.<name>.<key>=<value>).
    #[arg(long, value_delimiter = ',')]
    pub transforms: Vec<String>,
    /// Value converter: json (with schema), json-noschema, or string.
    #[arg(long)]
    pub converter: Option<String>,
    /// binary.handling.mode: bytes, base64, hex
    #[arg(long)]
    pub binary_handling_mode: Option<String>,
    /// Any other connector property, KEY=VALUE (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Where the events go: stdout (JSON lines) or file:PATH (JSON lines, fsynced).
    /// With --kafka (or bootstrap.servers in the config) they go to Kafka.
    #[arg(long, default_value = "stdout")]
    pub sink: String,
    /// Kafka bootstrap servers: produce each event to its topic.
    #[arg(long)]
    pub kafka: Option<String>,
    /// Seconds between progress lines on stderr.
    #[arg(long, default_value_t = 10)]
    pub progress_interval: u64,
}

/// Progress on stderr: the snapshot per table (rows, rows/s, the planner's estimate), the
/// LSN streaming starts from, then a status line (events/s, lag behind the server's WAL
/// end and since the last commit seen) every `every`.
async fn report_progress(stats: Arc<Mutex<CaptureStats>>, every: std::time::Duration) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    let (mut last_at, mut last_messages, mut last_line) = (std::time::Instant::now(), 0u64, std::time::Instant::now());
    let mut said_streaming = false;
    loop {
        tick.tick().await;
        let s = stats.lock().expect("stats").clone();
        let dt = last_at.elapsed().as_secs_f64().max(1e-3);
        if s.streaming && !said_streaming {
            eprintln!("snapshot done: {} rows; streaming from LSN {}", s.snapshot_rows, s.stream_start_lsn);
            said_streaming = true;
        }
        if last_line.elapsed() < every {
            continue;
        }
        let rate = (s.messages.max(s.snapshot_rows) - last_messages) as f64 / dt;
        if let (false, Some((table, rows, estimate))) = (s.streaming, &s.snapshot_table) {
            let of = if *estimate > 0 { format!(" of ~{estimate}") } else { String::new() };
            eprintln!("snapshot {table}: {rows}{of} rows ({rate:.0} rows/s)");
        } else if s.streaming {
            let lag_bytes = s.server_wal_end.0.saturating_sub(s.confirmed_lsn.0);
            let since =
                if s.last_commit_ms > 0 { format!("{} ms since the last commit seen", now_ms() - s.last_commit_ms) } else { "no commit seen yet".into() };
            let incremental = match &s.incremental_table {
                Some(t) => format!("; incremental snapshot of {t}: {} rows in {} chunks so far", s.incremental_rows, s.incremental_chunks),
                None => String::new(),
            };
            eprintln!("streaming: {rate:.0} events/s, confirmed {} ({lag_bytes} bytes behind the server), {since}{incremental}", s.confirmed_lsn);
        }
        last_messages = s.messages.max(s.snapshot_rows);
        last_at = std::time::Instant::now();
        last_line = last_at;
    }
}

pub(crate) use tensorcdc_source::clock::{shutdown_signal, unix_ms as now_ms};

/// Collects the properties: the file, then the flags.
pub fn properties(a: &CaptureArgs) -> Result<BTreeMap<String, String>> {
    let mut props = BTreeMap::new();
    if let Some(path) = &a.config {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let doc: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
        props = tensorcdc_postgres::config::json_properties(&doc).with_context(|| path.display().to_string())?;
    }
    let mut set = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            props.insert(k.to_string(), v.clone());
        }
    };
    set("database.url", &a.postgres);
    set("topic.prefix", &a.topic_prefix);
    set("table.include.list", &a.table_include_list);
    set("slot.name", &a.slot_name);
    set("snapshot.mode", &a.snapshot_mode);
    set("binary.handling.mode", &a.binary_handling_mode);
    set("bootstrap.servers", &a.kafka);
    if let Some(c) = &a.converter {
        let (conv, schemas) = match c.as_str() {
            "json" => ("org.apache.kafka.connect.json.JsonConverter", "true"),
            "json-noschema" => ("org.apache.kafka.connect.json.JsonConverter", "false"),
            "string" => ("org.apache.kafka.connect.storage.StringConverter", "false"),
            o => anyhow::bail!("--converter {o:?}: expected json, json-noschema or string"),
        };
        props.insert("value.converter".into(), conv.into());
        props.insert("value.converter.schemas.enable".into(), schemas.into());
    }
    if !a.transforms.is_empty() {
        props.insert("transforms".into(), a.transforms.join(","));
        for t in &a.transforms {
            props.entry(format!("transforms.{t}.type")).or_insert_with(|| t.clone());
        }
    }
    for kv in &a.set {
        let (k, v) = kv.split_once('=').with_context(|| format!("--set {kv:?}: expected KEY=VALUE"))?;
        props.insert(k.trim().into(), v.trim().into());
    }
    Ok(props)
}

/// Builds the config and the transform chain, warning about unknown keys.
pub fn build(a: &CaptureArgs) -> Result<(CaptureConfig, Transform)> {
    let props = properties(a)?;
    let (cfg, unknown) = CaptureConfig::from_properties(&props)?;
    if !unknown.is_empty() {
        eprintln!("warning: ignoring unknown connector properties: {}", unknown.join(", "));
    }
    let chain = Chain::from_config(&cfg.transforms)?;
    let transform: Transform = Arc::new(move |m, out| out.extend(chain.apply(m)));
    Ok((cfg, transform))
}

pub fn capture(a: CaptureArgs) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let (cfg, transform) = build(&a)?;
        let kafka_extra: Vec<(String, String)> = cfg.kafka.iter().filter(|(k, _)| *k != "bootstrap.servers").map(|(k, v)| (k.clone(), v.clone())).collect();
        let mut sink: Box<dyn Sink> = match (cfg.kafka.get("bootstrap.servers"), a.sink.as_str()) {
            (Some(brokers), _) => Box::new(tensorcdc_kafka::KafkaSink::new(brokers, &kafka_extra, cfg.converter)?),
            (None, sink) => match sink {
                "stdout" => Box::new(LineSink::stdout(cfg.converter)),
                s if s.starts_with("file:") => {
                    let path = PathBuf::from(&s[5..]);
                    Box::new(LineSink::file(&path, cfg.converter).with_context(|| format!("opening {}", path.display()))?)
                }
                o => anyhow::bail!("--sink {o:?}: expected stdout or file:PATH"),
            },
        };
        let stats = Arc::new(Mutex::new(CaptureStats::default()));
        let shutdown = shutdown_signal();
        // Stop within 5 s of the signal whatever the database or broker do: what was not
        // delivered was not confirmed, so a restart sends it again.
        let mut watch = shutdown.clone();
        tokio::spawn(async move {
            if watch.wait_for(|stop| *stop).await.is_ok() {
                tokio::time::sleep(std::time::Duration::from_secs(4)).await;
                eprintln!("capture stopped before every event was delivered; the slot was confirmed only up to what was, so a restart sends the rest again");
                std::process::exit(1);
            }
        });
        let progress = tokio::spawn(report_progress(stats.clone(), std::time::Duration::from_secs(a.progress_interval.max(1))));
        let s = run_capture(cfg, transform, sink.as_mut(), shutdown, stats).await;
        progress.abort();
        let s = s?;
        eprintln!(
            "capture stopped: {} snapshot rows, {} streamed changes, {} transactions, confirmed LSN {}",
            s.snapshot_rows, s.streamed_changes, s.transactions, s.confirmed_lsn
        );
        Ok(())
    })
}
