//! `tensorcdc run`: continuous learning on one table, in one process (issue 13, first part).
//!
//! The table is captured in-process (snapshot, then the stream). Labelled rows (label not
//! NULL) go into the training buffer keyed by primary key (`tensorcdc-learn`): an update
//! replaces its example, a delete retracts it. A training thread fine-tunes the model every
//! `--retrain-every` new labelled rows or `--retrain-secs` seconds (a few epochs over the new
//! rows mixed with a replay sample of the buffer), so serving never waits for training. Each
//! version is published atomically into `--out` with the position it covers and the examples
//! it has seen; it serves only when the gate admits its held-out score. Unlabelled rows are
//! predicted as they commit with the serving version and upserted by primary key into the
//! predictions table, with model version, source position and commit-to-prediction latency;
//! a row whose features change is predicted again.
//!
//! `/metrics` (Prometheus text, [`metrics`]) reports rows captured, lag, labelled rows,
//! examples trained, the serving version and its held-out score, and the commit-to-prediction
//! latency histogram; `/` is the live page ([`live`]): the score of each version over time,
//! the latency histogram and the latest predictions (with images for 28x28 pixels).
//!
//! **Exactly once across crashes.** The capture uses a persistent slot (`--slot`, default
//! `tensorcdc_run_<table>`), confirmed only up to the last transaction that a published
//! version has counted, or, when no labelled row is waiting for a version, up to the last
//! transaction read. After `kill -9`, [`resume`] carries on from the last version: every
//! labelled example is counted once in the versions' history and every unlabelled row has
//! one current prediction.
//!
//! **Scale-out through Kafka** (`--kafka --topic --group`): the table's change events come
//! from a consumer group, so processes of one group share the topic's partitions; each learns
//! from the labelled rows of its partitions and predicts the others, and when one dies the
//! group hands its partitions to the rest. Offsets are stored once a batch is used, so a
//! crash repeats at most the batch in hand: at least once for training counts (exactly once
//! is the capture's), and still one current prediction per row (an upsert by key).

mod args;
pub mod config;
mod live;
mod metrics;
pub mod predictions;
mod preflight;
mod resume;
mod schema;
mod state;
mod train;

use std::collections::HashMap;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use crate::{TrainingBuffer, Txns, Versions};
use anyhow::{Context, Result};
use tensorcdc_change::Lsn;
use tensorcdc_source::{clock, SourceConfig, Stream};

pub use args::RunArgs;
use predictions::Predictions;
pub use predictions::{position_text, say_notes};
use state::State;
use train::{Job, Start};

/// Runs until the stream ends or SIGINT/SIGTERM (the handlers are installed for the process).
pub fn run(a: RunArgs) -> Result<()> {
    run_until(a, None)
}

/// Runs until the stream ends or `stop` says true (`None`: SIGINT/SIGTERM). A host with signal
/// handlers of its own (Python) passes its own `stop`.
pub fn run_until(a: RunArgs, stop: Option<tokio::sync::watch::Receiver<bool>>) -> Result<()> {
    clock::mark_start();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(run_async(a, stop))
}

async fn run_async(a: RunArgs, stop: Option<tokio::sync::watch::Receiver<bool>>) -> Result<()> {
    // Nothing is created (slot, predictions table, versions folder) for a run that cannot work.
    let key_columns = {
        let client =
            tensorcdc_postgres::conn::connect(&a.source).await.with_context(|| format!("connecting to {}", tensorcdc_postgres::conn::redact(&a.source)))?;
        preflight::check(&client, &a.table, &a.label, a.key.as_deref(), a.features.as_deref(), &a.layers).await?
    };
    let versions = Versions::open(&a.out)?;
    let pred_table = a.predictions_table.clone().unwrap_or_else(|| format!("{}_predictions", a.table));
    let topic = match (&a.predictions_topic, a.predictions_brokers.as_ref().or(a.kafka.as_ref())) {
        (Some(t), Some(b)) => Some((tensorcdc_kafka::Publisher::new(b, &tensorcdc_kafka::settings(&a.kafka_settings)?)?, t.clone())),
        (Some(_), None) => anyhow::bail!("--predictions-topic needs --predictions-brokers HOST:PORT (or --kafka)"),
        _ => None,
    };
    let names = a.classes.as_deref().map(tensorcdc_dataset::mnist::class_names).transpose().map_err(anyhow::Error::msg)?;
    let out = Predictions::new(&a.source, &pred_table, topic, names).await?;
    let slot = a.slot.clone().unwrap_or_else(|| format!("tensorcdc_run_{}", a.table.to_lowercase()));
    let offsets = a.out.join("capture-offsets.json");
    if let (Some(t), None) = (&a.signal_table, &a.kafka) {
        create_signal_table(&out.client, t).await?;
    }
    let cfg = match &a.kafka {
        None => SourceConfig {
            source: Some(a.source.clone()),
            table: Some(a.table.clone()),
            stream_timeout_ms: Some(a.stream_timeout),
            slot: Some(slot.clone()),
            offset_file: Some(offsets.clone()),
            key_columns: a.key.clone(),
            signal_table: a.signal_table.clone(),
            ..Default::default()
        },
        Some(brokers) => {
            let topic = a.topic.as_deref().context("--kafka needs --topic (the table's change events)")?;
            SourceConfig {
                stream_timeout_ms: Some(a.stream_timeout),
                kafka_settings: tensorcdc_kafka::settings(&a.kafka_settings)?,
                ..SourceConfig::kafka(brokers, topic, Some(&a.group))
            }
        }
    };
    let by_txn = a.kafka.is_none();
    let m = metrics::Metrics::new(live::Live::new(&a.table, &a.label));
    if a.metrics_addr != "off" {
        let bound = m.serve(&a.metrics_addr).await?;
        println!("metrics on http://{bound}/metrics, live page on http://{bound}/");
    }
    for v in versions.history()? {
        m.live.version(&v);
    }
    let mut st = State {
        by_txn,
        buf: TrainingBuffer::new(&a.label, a.held_out_percent).with_max_rows(a.buffer_rows),
        txns: Txns::new(Lsn(0)),
        spec: None,
        serving: None,
        waiting: HashMap::new(),
        schema: schema::Schema::new(&out.client, &a.table, &a.label, &key_columns, a.features.clone()).await?,
        predicted_keys: out.keys().await?,
        backlog: Vec::new(),
        superseded: Default::default(),
        backlog_since: None,
        position: None,
        predicted: 0,
        counted: 0,
        skipped: Default::default(),
        training: false,
        first: true,
        unfit_at: None,
        last_version: Instant::now(),
        confirmed: Lsn(0),
        confirmable: Lsn(0),
    };
    let mut start = Start { trainer: None, serving: None };
    let mut again = Vec::new();
    let mut resumed_in_process = false;
    match resume::load(&versions)? {
        None if by_txn => {
            // As long as the capture itself would wait for a slot still held.
            let c = cfg.capture_config(&a.source, &a.table)?;
            let wait = std::time::Duration::from_millis(c.slot_retry_delay_ms.saturating_mul(c.slot_max_retries.into()));
            resume::reset_slot(&out.client, &slot, &offsets, wait).await?
        }
        None => {}
        Some(r) => {
            // The versions count what the slot sent; without it the changes since are lost,
            // and a new snapshot would count the table's rows again.
            if by_txn && out.client.query("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", &[&slot]).await?.is_empty() {
                anyhow::bail!(
                    "replication slot {slot:?} is gone (dropped, or a failover to a server without it), but {} holds version {} \
                     (through LSN {}): the changes since are lost, and a new snapshot would count the table's rows again. \
                     Start over with an empty --out (a new slot, a new snapshot, version 1)",
                    a.out.display(),
                    r.latest.version,
                    Lsn(r.latest.ack_lsn)
                );
            }
            println!(
                "run: resuming from version {} ({} examples seen, through LSN {}), serving version {}",
                r.latest.version,
                r.latest.examples_seen,
                Lsn(r.latest.ack_lsn),
                r.serving.as_ref().map(|s| s.1.to_string()).unwrap_or_else(|| "none".into())
            );
            (st.counted, st.buf.labelled_changes, st.txns) = (r.latest.examples_seen, r.latest.examples_seen, Txns::new(Lsn(r.latest.ack_lsn)));
            st.first = false;
            (st.spec, st.serving, start, st.position) = (Some(r.spec), r.serving, r.start, r.latest.position.parse().ok());
            if let Some(v) = &st.serving {
                m.model_version.set(v.1 as i64);
            }
            m.examples_trained.set(r.latest.examples_seen as i64);
            st.skipped.clone_from(&r.latest.skipped);
            m.set_skipped(&st.skipped);
            if by_txn {
                again = resume::refill(&cfg, &a.source, &a.table, &mut st.buf).await?;
                resumed_in_process = true;
            }
        }
    }
    let mut stream = Stream::open(&cfg, &a.table, a.stream_timeout).await?;
    if resumed_in_process {
        // Predictions of rows that are no longer unlabelled (labelled or deleted while the run
        // was down) go; the rest are predicted again beside the stream.
        let unlabelled: std::collections::HashSet<&str> = again.iter().filter_map(|p| p.record.key.as_deref()).collect();
        let stale: Vec<String> = st.predicted_keys.iter().filter(|k| !unlabelled.contains(k.as_str())).cloned().collect();
        out.delete_many(&stale).await?;
        st.predicted_keys.retain(|k| unlabelled.contains(k.as_str()));
        println!(
            "run: {} labelled rows held again; {} predictions of rows labelled or deleted since removed; predicting the {} unlabelled rows again beside the stream",
            st.buf.len(),
            stale.len(),
            again.len()
        );
        st.backlog_since = Some((Instant::now(), again.len()));
        st.backlog = again;
    }
    let (job_tx, job_rx) = std_mpsc::channel::<Job>();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let trainer = {
        let (a, v) = (a.clone(), versions.clone());
        std::thread::Builder::new().name("train".into()).spawn(move || train::train_versions(a, v, start, job_rx, done_tx))?
    };
    let shutdown = stop.unwrap_or_else(clock::shutdown_signal);
    let from = match &a.kafka {
        None => format!("slot {slot}"),
        Some(b) => format!("topic {} on {b}, group {}", a.topic.as_deref().unwrap_or_default(), a.group),
    };
    println!("run: learning from public.{} (label {:?}), versions in {}, predictions in {pred_table}, {from}", a.table, a.label, a.out.display());
    let mut ended = false;
    let mut said_streaming = false;
    loop {
        tokio::select! {
            batch = stream.next_changes(256) => {
                let Some(items) = batch? else { ended = true; break };
                if stream.take_restarted() {
                    st.txns.restart();
                }
                m.rows_captured.inc_by(items.len() as u64);
                if let Some(c) = items.last().and_then(|it| it.commit_ts_ms) {
                    m.lag_seconds.set((clock::unix_ms() - c).max(0) as f64 / 1e3);
                }
                let fresh = st.apply(&out, &m, items).await?;
                st.serve(&out, &m, fresh).await?;
            }
            done = done_rx.recv() => match done {
                Some(done) => st.published(&out, &m, done.map_err(|e| anyhow::anyhow!("training: {e}"))?).await?,
                None => anyhow::bail!("the training thread stopped (a panic: see above); versions published so far are kept"),
            },
            _ = std::future::ready(()), if !st.backlog.is_empty() => st.repredict(&out, &m).await?,
            _ = clock::wait_true(shutdown.clone()) => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        if !said_streaming && stream.streaming() {
            said_streaming = true;
            println!("run: streaming changes, {:.2} s after start", clock::since_start_s());
        }
        if let Some(job) = st.due(&a, stream.streaming(), false, &key_columns)? {
            job_tx.send(job).context("the training thread stopped")?;
        }
        if let Some(lsn) = st.next_confirm() {
            stream.confirm(lsn);
        }
        if let Some((lsn, held)) = stream.slot_position() {
            m.confirmed_lsn.set(lsn.0 as i64);
            m.slot_wal_bytes.set(held as i64);
        }
    }
    // A version in training is finished and published; at the end of the stream, so is one
    // with the labelled rows left.
    for last in [false, true] {
        if st.training {
            match done_rx.recv().await {
                Some(d) => st.published(&out, &m, d.map_err(|e| anyhow::anyhow!("training: {e}"))?).await?,
                None => break,
            }
        }
        if last || !ended {
            break;
        }
        if let Some(job) = st.due(&a, true, true, &key_columns)? {
            job_tx.send(job).context("the training thread stopped")?;
        }
    }
    if let Some(lsn) = st.next_confirm() {
        stream.confirm(lsn);
    }
    drop(job_tx);
    stream.close().await?;
    let _ = tokio::task::spawn_blocking(move || trainer.join()).await;
    println!("run: {} predictions written, {} labelled rows held", st.predicted, st.buf.len());
    Ok(())
}

/// Creates the signal table of `--signal-table` with Debezium's columns, when it is missing.
async fn create_signal_table(client: &tokio_postgres::Client, table: &str) -> Result<()> {
    let (schema, name) = table.split_once('.').unwrap_or(("public", table));
    let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let sql = format!("CREATE TABLE IF NOT EXISTS {}.{} (id VARCHAR(42) PRIMARY KEY, type VARCHAR(32) NOT NULL, data VARCHAR(2048) NULL)", q(schema), q(name));
    client.batch_execute(&sql).await.with_context(|| format!("creating the signal table {table}"))
}
