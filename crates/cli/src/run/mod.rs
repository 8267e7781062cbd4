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
//! latency histogram.
//!
//! Not yet: the slot confirmed only up to what is both checkpointed and written (exactly once
//! across crashes: the capture's slot is temporary today), Kafka groups as the source, and the
//! live page.

mod metrics;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tensorcdc_dataset::features::{FeatureSpec, Record, SpecOptions, Task};
use tensorcdc_learn::{Applied, Gate, Score, TrainingBuffer, VersionMeta, Versions};
use tensorcdc_model::sequential::{checkpoint, Data, FitSettings, Loss, SeqPredictor, SeqTrainer, SequentialSpec};
use tensorcdc_model::{argmax, device_from_env};
use tensorcdc_source::{SourceConfig, Stream};

use crate::capture::now_ms;
use crate::tabular::encode;

#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Postgres URL of the table to learn from and serve.
    #[arg(long)]
    pub source: String,
    #[arg(long)]
    pub table: String,
    /// The label column: rows where it is NULL are predicted, the others are learnt from.
    #[arg(long)]
    pub label: String,
    /// Feature columns (default: every column but the primary key and the label).
    #[arg(long, value_delimiter = ',')]
    pub features: Option<Vec<String>>,
    /// Hidden Dense(relu) layers.
    #[arg(long, value_delimiter = ',', default_value = "64,64")]
    pub layers: Vec<usize>,
    /// The versions folder (v000001/, versions.jsonl, serving).
    #[arg(long, default_value = "models")]
    pub out: PathBuf,
    /// Predictions table (default: <table>_predictions), one row per source row key.
    #[arg(long)]
    pub predictions_table: Option<String>,
    /// Train a new version after this many new labelled rows …
    #[arg(long, default_value_t = 200)]
    pub retrain_every: usize,
    /// … or this many seconds after the last version, when any arrived.
    #[arg(long, default_value_t = 30.0)]
    pub retrain_secs: f64,
    /// Epochs of the first version (on the snapshot's labelled rows).
    #[arg(long, default_value_t = 5)]
    pub initial_epochs: usize,
    /// Epochs of each later version over the new rows and the replay sample.
    #[arg(long, default_value_t = 2)]
    pub refresh_epochs: usize,
    /// Rows of the buffer replayed with the new ones.
    #[arg(long, default_value_t = 2000)]
    pub replay: usize,
    /// Percent of the labelled rows (by key hash) held out to score versions.
    #[arg(long, default_value_t = 10)]
    pub held_out_percent: u8,
    /// A version serves when its held-out accuracy is at most this much lower (or its loss
    /// this fraction higher) than the serving version's.
    #[arg(long, default_value_t = 0.0)]
    pub margin: f64,
    #[arg(long, default_value_t = 0.001)]
    pub learning_rate: f64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// End after this many ms without a change (-1: run until Ctrl-C).
    #[arg(long, default_value_t = -1)]
    pub stream_timeout: i64,
    /// Where `/metrics` is served (port 0: any free port; "off": not served).
    #[arg(long, default_value = "127.0.0.1:9187")]
    pub metrics_addr: String,
}

/// A training job: the data of one version.
struct Job {
    spec: FeatureSpec,
    train: Data,
    held: Data,
    epochs: usize,
    position: String,
    examples_seen: u64,
}

/// What the training thread sends back.
struct Done {
    meta: VersionMeta,
    predictor: Option<SeqPredictor>,
}

/// The training thread: owns the trainer, fine-tunes it job after job, scores each version on
/// the held-out rows, publishes it, and sends back the predictor of an admitted one.
fn train_versions(a: RunArgs, versions: Versions, jobs: std_mpsc::Receiver<Job>, done: tokio::sync::mpsc::UnboundedSender<Result<Done, String>>) {
    let gate = Gate { margin: a.margin };
    let mut trainer: Option<SeqTrainer> = None;
    let mut serving: Option<Score> = None;
    for job in jobs {
        let r = (|| -> Result<Done, String> {
            let t = match &mut trainer {
                Some(t) => t,
                None => {
                    let model = SequentialSpec::dense(job.spec.width(), &a.layers, job.spec.outputs());
                    let loss = match job.spec.task {
                        Task::Regression => Loss::MeanSquaredError,
                        Task::Classification if model.outputs() == 1 => Loss::BinaryCrossentropy,
                        Task::Classification => Loss::SparseCategoricalCrossentropy,
                    };
                    let settings = FitSettings { epochs: job.epochs, batch_size: 64, learning_rate: a.learning_rate, seed: a.seed, optimizer: None };
                    let device = device_from_env().map_err(|e| e.to_string())?;
                    trainer.insert(SeqTrainer::new(model, loss, settings, &device).map_err(|e| e.to_string())?)
                }
            };
            for _ in 0..job.epochs {
                t.fit_epoch(&job.train, |_| {});
            }
            let p = t.predictor();
            let m = p.evaluate(&job.held, 1024);
            let score = Score { loss: m.loss(), accuracy: (job.spec.task == Task::Classification).then(|| m.accuracy()), rows: m.n };
            let admitted = gate.admits(&score, serving.as_ref());
            let meta = VersionMeta {
                version: versions.next_number().map_err(|e| e.to_string())?,
                position: job.position,
                examples_seen: job.examples_seen,
                score,
                serving: admitted,
                published_ms: now_ms(),
            };
            versions.publish(&meta, |dir| checkpoint::save(t, &job.spec, dir).map_err(|e| e.to_string()))?;
            if admitted {
                serving = Some(score);
            }
            Ok(Done { meta, predictor: admitted.then_some(p) })
        })();
        if done.send(r).is_err() {
            return;
        }
    }
}

/// The predictions table: one row per source row key, replaced when the row is predicted again.
struct Predictions {
    client: tokio_postgres::Client,
    upsert: tokio_postgres::Statement,
}

impl Predictions {
    async fn new(url: &str, table: &str) -> Result<Self> {
        if !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("--predictions-table {table:?}: use letters, digits and '_'");
        }
        let client = tensorcdc_postgres::conn::connect(url).await.with_context(|| format!("connecting to {}", tensorcdc_postgres::conn::redact(url)))?;
        client
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {table}(row_key TEXT PRIMARY KEY, prediction TEXT, probability REAL, value DOUBLE PRECISION, \
                 model_version BIGINT, source_position TEXT, latency_ms DOUBLE PRECISION, predicted_at TIMESTAMPTZ DEFAULT now())"
            ))
            .await?;
        let upsert = client
            .prepare(&format!(
                "INSERT INTO {table}(row_key, prediction, probability, value, model_version, source_position, latency_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (row_key) DO UPDATE SET prediction = EXCLUDED.prediction, probability = EXCLUDED.probability, value = EXCLUDED.value, \
                 model_version = EXCLUDED.model_version, source_position = EXCLUDED.source_position, latency_ms = EXCLUDED.latency_ms, predicted_at = now()"
            ))
            .await?;
        Ok(Predictions { client, upsert })
    }
}

/// An unlabelled row waiting for (or given) a prediction.
struct Pending {
    record: Record,
    position: String,
    commit_ts_ms: Option<i64>,
}

/// Predicts `rows` with the serving version and upserts them; returns how many were written.
async fn predict(out: &Predictions, m: &metrics::Metrics, spec: &FeatureSpec, p: &SeqPredictor, version: u64, rows: &[Pending]) -> Result<usize> {
    let mut x = Vec::with_capacity(rows.len() * spec.width());
    let mut ok = Vec::new();
    for r in rows {
        match spec.encode(&r.record, &mut x) {
            Ok(()) => ok.push(r),
            Err(e) => eprintln!("row with key {} at {}: {e}; not predicted", r.record.key.as_deref().unwrap_or("(none)"), r.position),
        }
    }
    if ok.is_empty() {
        return Ok(0);
    }
    let outs = p.predict(&x, spec.width())?;
    let done = now_ms();
    for (r, o) in ok.iter().zip(outs) {
        let (prediction, probability, value) = match spec.task {
            Task::Classification => {
                let (i, prob) = argmax(&o);
                (spec.classes[i].clone(), Some(prob), None)
            }
            Task::Regression => (o[0].to_string(), None, Some(o[0] as f64)),
        };
        let latency = r.commit_ts_ms.map(|c| (done - c).max(0) as f64);
        if let Some(l) = latency {
            m.latency.observe(l / 1e3);
        }
        m.predictions.inc();
        out.client.execute(&out.upsert, &[&r.record.key, &prediction, &probability, &value, &(version as i64), &r.position, &latency]).await?;
    }
    Ok(ok.len())
}

pub fn run(a: RunArgs) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(run_async(a))
}

async fn run_async(a: RunArgs) -> Result<()> {
    let versions = Versions::open(&a.out).map_err(anyhow::Error::msg)?;
    let pred_table = a.predictions_table.clone().unwrap_or_else(|| format!("{}_predictions", a.table));
    let out = Predictions::new(&a.source, &pred_table).await?;
    let cfg = SourceConfig { source: Some(a.source.clone()), table: Some(a.table.clone()), stream_timeout_ms: Some(a.stream_timeout), ..Default::default() };
    // The primary key names rows; it is not a feature.
    let key_columns: Vec<String> = out
        .client
        .query(
            "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = to_regclass($1) AND i.indisprimary",
            &[&format!("public.{}", a.table)],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let m = metrics::Metrics::new();
    if a.metrics_addr != "off" {
        let bound = m.serve(&a.metrics_addr).await?;
        println!("metrics on http://{bound}/metrics");
    }
    let mut stream = Stream::open(&cfg, &a.table, a.stream_timeout).await?;
    let mut buf = TrainingBuffer::new(&a.label, a.held_out_percent);
    let (job_tx, job_rx) = std_mpsc::channel::<Job>();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let trainer = {
        let (a, v) = (a.clone(), versions.clone());
        std::thread::Builder::new().name("train".into()).spawn(move || train_versions(a, v, job_rx, done_tx))?
    };
    let shutdown = crate::capture::shutdown_signal();
    let mut spec: Option<FeatureSpec> = None;
    let mut serving: Option<(SeqPredictor, u64)> = None;
    // Unlabelled rows not yet predicted (no version serves yet), by key.
    let mut waiting: HashMap<String, Pending> = HashMap::new();
    let (mut training, mut last_version, mut position, mut predicted) = (false, Instant::now(), String::new(), 0usize);
    println!("run: learning from {}.{} (label {:?}), versions in {}, predictions in {pred_table}", "public", a.table, a.label, a.out.display());
    loop {
        tokio::select! {
            batch = stream.next_changes(256) => {
                let Some(items) = batch? else { break };
                let mut fresh = Vec::new();
                m.rows_captured.inc_by(items.len() as u64);
                if let Some(c) = items.last().and_then(|it| it.commit_ts_ms) {
                    m.lag_seconds.set((now_ms() - c).max(0) as f64 / 1e3);
                }
                for it in items {
                    position.clone_from(&it.position);
                    match buf.apply(it.change) {
                        Applied::Labelled { .. } => { m.labelled_rows.inc(); }
                        Applied::Unlabelled(record) => fresh.push(Pending { record, position: it.position, commit_ts_ms: it.commit_ts_ms }),
                        Applied::Retracted(k) => { waiting.remove(&k); }
                        _ => {}
                    }
                }
                match (&serving, &spec) {
                    (Some((p, v)), Some(s)) => predicted += predict(&out, &m, s, p, *v, &fresh).await?,
                    _ => waiting.extend(fresh.into_iter().filter_map(|p| p.record.key.clone().map(|k| (k, p)))),
                }
            }
            Some(done) = done_rx.recv() => {
                training = false;
                let d = done.map_err(|e| anyhow::anyhow!("training: {e}"))?;
                let s = d.meta.score;
                println!(
                    "version {}: {} examples seen, held-out {} on {} rows{}",
                    d.meta.version,
                    d.meta.examples_seen,
                    s.accuracy.map(|x| format!("accuracy {x:.4}")).unwrap_or_else(|| format!("loss {:.4}", s.loss)),
                    s.rows,
                    if d.meta.serving { ", serving" } else { ", worse than the serving version: kept, not serving" }
                );
                m.examples_trained.set(d.meta.examples_seen as i64);
                if !d.meta.serving {
                    m.versions_refused.inc();
                }
                if let Some(p) = d.predictor {
                    m.model_version.set(d.meta.version as i64);
                    m.heldout_loss.set(s.loss);
                    m.heldout_accuracy.set(s.accuracy.unwrap_or(f64::NAN));
                    serving = Some((p, d.meta.version));
                    let rows: Vec<Pending> = waiting.drain().map(|(_, p)| p).collect();
                    if let (Some((p, v)), Some(s)) = (&serving, &spec) {
                        predicted += predict(&out, &m, s, p, *v, &rows).await?;
                    }
                }
            }
            _ = crate::follow::wait_true(shutdown.clone()) => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        // The first version learns from the whole snapshot.
        let due = (spec.is_some() || stream.streaming())
            && (buf.new_count() >= a.retrain_every || (buf.new_count() > 0 && (spec.is_none() || last_version.elapsed().as_secs_f64() >= a.retrain_secs)));
        if !training && due {
            let first = spec.is_none();
            if first {
                let opts = SpecOptions {
                    label: a.label.clone(),
                    features: a.features.clone(),
                    exclude: key_columns.clone(),
                    scaling: Default::default(),
                    nulls: Default::default(),
                    task: None,
                };
                spec = Some(FeatureSpec::fit(buf.training(), &opts).map_err(anyhow::Error::msg)?);
            }
            let s = spec.clone().expect("fitted");
            let new = buf.take_new();
            let mut rows: Vec<&Record> = new.iter().collect();
            let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(a.seed ^ buf.labelled_changes);
            if !first {
                rows.extend(buf.replay(a.replay, &mut rng));
            }
            let held: Vec<&Record> = buf.held_out().collect();
            let job = Job { train: encode(&s, rows.iter().copied()).0, held: encode(&s, held.iter().copied()).0, spec: s, epochs: if first { a.initial_epochs } else { a.refresh_epochs }, position: position.clone(), examples_seen: buf.labelled_changes };
            if job.train.is_empty() {
                continue;
            }
            job_tx.send(job).context("the training thread stopped")?;
            training = true;
            last_version = Instant::now();
        }
    }
    // A version in training when the stream ended is finished and published.
    if training {
        if let Some(Ok(d)) = done_rx.recv().await {
            println!("version {}: {} examples seen{}", d.meta.version, d.meta.examples_seen, if d.meta.serving { ", serving" } else { ", not serving" });
        }
    }
    drop(job_tx);
    stream.close().await?;
    let _ = tokio::task::spawn_blocking(move || trainer.join()).await;
    println!("run: {predicted} predictions written, {} labelled rows held", buf.len());
    Ok(())
}
