//! `tensorcdc run`'s predictions table: one row per source row key, replaced when the row is
//! predicted again and removed when the row is deleted, with the process that predicted it;
//! and, with `--predictions-topic`, each prediction produced to a topic keyed by row key.

use anyhow::{bail, Context, Result};
use tensorcdc_dataset::features::{FeatureSpec, Record, Task};
use tensorcdc_model::argmax;
use tensorcdc_model::sequential::SeqPredictor;

use super::live::{pixels, Recent};
use super::metrics::Metrics;
use crate::follow::now_ms;

pub struct Predictions {
    pub client: tokio_postgres::Client,
    upsert: tokio_postgres::Statement,
    delete: tokio_postgres::Statement,
    keys: tokio_postgres::Statement,
    /// Which process predicted (`pid N`): processes of one Kafka group share a table.
    worker: String,
    /// Each prediction also produced to this topic, keyed by row key (JSON).
    topic: Option<(tensorcdc_kafka::Publisher, String)>,
    /// `--classes`: the names of integer classes 0-9.
    names: Option<Vec<String>>,
}

/// A prediction as produced to `--predictions-topic`.
#[derive(serde::Serialize)]
struct TopicRecord<'a> {
    row_key: &'a str,
    prediction: &'a str,
    probability: Option<f32>,
    value: Option<f64>,
    model_version: u64,
    source_position: &'a str,
    latency_ms: Option<f64>,
    worker: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    class_name: Option<&'a str>,
}

/// An unlabelled row waiting for (or given) a prediction.
pub struct Pending {
    pub record: Record,
    pub position: String,
    pub commit_ts_ms: Option<i64>,
    /// A snapshot row (or one read again after a restart): it gets no latency.
    pub snapshot: bool,
}

impl Predictions {
    pub async fn new(url: &str, table: &str, topic: Option<(tensorcdc_kafka::Publisher, String)>, names: Option<Vec<String>>) -> Result<Self> {
        if !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("--predictions-table {table:?}: use letters, digits and '_'");
        }
        let client = tensorcdc_postgres::conn::connect(url).await.with_context(|| format!("connecting to {}", tensorcdc_postgres::conn::redact(url)))?;
        client
            // Processes of one group start together: CREATE TABLE IF NOT EXISTS races with
            // itself (a duplicate pg_type row), so one at a time, under an advisory lock.
            .batch_execute(&format!(
                "BEGIN; SELECT pg_advisory_xact_lock(hashtext('tensorcdc run {table}')); \
                 CREATE TABLE IF NOT EXISTS {table}(row_key TEXT PRIMARY KEY, prediction TEXT, probability REAL, value DOUBLE PRECISION, \
                 model_version BIGINT, source_position TEXT, latency_ms DOUBLE PRECISION, predicted_at TIMESTAMPTZ DEFAULT now()); \
                 ALTER TABLE {table} ADD COLUMN IF NOT EXISTS worker TEXT, ADD COLUMN IF NOT EXISTS class_name TEXT; COMMIT"
            ))
            .await?;
        let upsert = client
            .prepare(&format!(
                "INSERT INTO {table}(row_key, prediction, probability, value, model_version, source_position, latency_ms, worker, class_name) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (row_key) DO UPDATE SET prediction = EXCLUDED.prediction, probability = EXCLUDED.probability, value = EXCLUDED.value, \
                 model_version = EXCLUDED.model_version, source_position = EXCLUDED.source_position, latency_ms = EXCLUDED.latency_ms, \
                 worker = EXCLUDED.worker, class_name = EXCLUDED.class_name, predicted_at = now()"
            ))
            .await?;
        let delete = client.prepare(&format!("DELETE FROM {table} WHERE row_key = $1")).await?;
        let keys = client.prepare(&format!("SELECT row_key FROM {table}")).await?;
        Ok(Predictions { client, upsert, delete, keys, worker: format!("pid {}", std::process::id()), topic, names })
    }

    /// The keys of every row the table holds a prediction for (by this process or another of
    /// its group, before a restart too): one of them labelled since loses it.
    pub async fn keys(&self) -> Result<std::collections::HashSet<String>> {
        Ok(self.client.query(&self.keys, &[]).await?.iter().filter_map(|r| r.get::<_, Option<String>>(0)).collect())
    }

    /// The row with this key was deleted: so is its prediction, and the predictions topic
    /// gets a tombstone for the key (a null value: Kafka's delete, which compaction keeps
    /// last), when the row had a prediction.
    pub async fn delete(&self, key: &str) -> Result<()> {
        let had = self.client.execute(&self.delete, &[&key]).await?;
        if let (Some((publisher, topic)), true) = (&self.topic, had > 0) {
            publisher.send(topic, key, None).await?;
        }
        Ok(())
    }

    /// Predicts `rows` with `p` and upserts them; returns how many were written.
    pub async fn predict(&self, m: &Metrics, spec: &FeatureSpec, p: &SeqPredictor, version: u64, rows: &[Pending]) -> Result<usize> {
        let mut x = Vec::with_capacity(rows.len() * spec.width());
        let mut ok = Vec::new();
        for r in rows {
            match spec.encode(&r.record, &mut x) {
                Ok(()) => {
                    crate::tabular::say_notes(spec, &r.record, &r.position);
                    ok.push(r)
                }
                Err(e) => eprintln!("row with key {} at {}: {e}; not predicted", r.record.key.as_deref().unwrap_or("(none)"), r.position),
            }
        }
        if ok.is_empty() {
            return Ok(0);
        }
        let outs = p.predict(&x, spec.width())?;
        let done = now_ms();
        for (i, (r, o)) in ok.iter().zip(outs).enumerate() {
            let (prediction, probability, value) = match spec.task {
                Task::Classification => {
                    let (i, prob) = argmax(&o);
                    (spec.classes[i].clone(), Some(prob), None)
                }
                Task::Regression => (o[0].to_string(), None, Some(o[0] as f64)),
            };
            let latency = crate::follow::live_latency_ms(r.commit_ts_ms, r.snapshot, done);
            match latency {
                Some(l) => m.latency.observe(l / 1e3),
                None => {
                    m.existing_predictions.inc();
                }
            }
            m.predictions.inc();
            let class_name = self.names.as_ref().and_then(|n| prediction.parse::<usize>().ok().and_then(|k| n.get(k)));
            let w = spec.width();
            m.live.prediction(Recent {
                key: r.record.key.clone().unwrap_or_default(),
                prediction: class_name.map_or_else(|| prediction.clone(), |c| format!("{prediction} ({c})")),
                probability,
                version,
                latency_ms: latency,
                pixels: pixels(&x[i * w..(i + 1) * w]),
            });
            self.client
                .execute(&self.upsert, &[&r.record.key, &prediction, &probability, &value, &(version as i64), &r.position, &latency, &self.worker, &class_name])
                .await?;
            if let Some((publisher, topic)) = &self.topic {
                let key = r.record.key.as_deref().unwrap_or_default();
                let rec = TopicRecord {
                    row_key: key,
                    prediction: &prediction,
                    probability,
                    value,
                    model_version: version,
                    source_position: &r.position,
                    latency_ms: latency,
                    worker: &self.worker,
                    class_name: class_name.map(String::as_str),
                };
                publisher.send(topic, key, Some(&serde_json::to_vec(&rec)?)).await?;
            }
        }
        Ok(ok.len())
    }
}
