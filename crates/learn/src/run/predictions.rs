//! `tensorcdc run`'s predictions table: one row per source row key, replaced when the row is
//! predicted again and removed when the row is deleted, with the process that predicted it;
//! and, with `--predictions-topic`, each prediction produced to a topic keyed by row key.

use anyhow::{bail, Context, Result};
use tensorcdc_dataset::features::{FeatureSpec, Record, Task};
use tensorcdc_dataset::Position;
use tensorcdc_model::argmax;
use tensorcdc_model::sequential::SeqPredictor;

use super::live::{pixels, Recent};
use super::metrics::Metrics;
use tensorcdc_source::clock::{live_latency_ms, now_ms};

pub struct Predictions {
    pub client: tokio_postgres::Client,
    upsert: tokio_postgres::Statement,
    delete_many: tokio_postgres::Statement,
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

/// How a row's position is written to the predictions table and the topic: the position, or
/// `restart` for a row read again at a restart.
pub fn position_text(p: Option<&Position>) -> String {
    p.map_or_else(|| "restart".to_string(), ToString::to_string)
}

/// An unlabelled row waiting for (or given) a prediction.
pub struct Pending {
    pub record: Record,
    /// Where the change came from; `None` for a row read again at a restart.
    pub position: Option<Position>,
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
                 SELECT k, p, pr, v, $5, pos, l, $8, cn \
                 FROM UNNEST($1::text[], $2::text[], $3::real[], $4::float8[], $6::text[], $7::float8[], $9::text[]) AS u(k, p, pr, v, pos, l, cn) \
                 ON CONFLICT (row_key) DO UPDATE SET prediction = EXCLUDED.prediction, probability = EXCLUDED.probability, value = EXCLUDED.value, \
                 model_version = EXCLUDED.model_version, source_position = EXCLUDED.source_position, latency_ms = EXCLUDED.latency_ms, \
                 worker = EXCLUDED.worker, class_name = EXCLUDED.class_name, predicted_at = now()"
            ))
            .await?;
        let keys = client.prepare(&format!("SELECT row_key FROM {table}")).await?;
        let delete_many = client.prepare(&format!("DELETE FROM {table} WHERE row_key = ANY($1::text[]) RETURNING row_key")).await?;
        Ok(Predictions { client, upsert, delete_many, keys, worker: format!("pid {}", std::process::id()), topic, names })
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
        self.delete_many(&[key.to_string()]).await
    }

    /// The predictions of these rows go (one statement), and the topic gets a tombstone for
    /// each key that had one.
    pub async fn delete_many(&self, keys: &[String]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let gone = self.client.query(&self.delete_many, &[&keys]).await?;
        if let Some((publisher, topic)) = &self.topic {
            for r in gone {
                publisher.send(topic, r.get::<_, &str>(0), None).await?;
            }
        }
        Ok(())
    }

    /// Predicts `rows` with `p` and upserts them, in one statement (the rows passed as
    /// arrays through `UNNEST`); a key given twice keeps its last row. Returns how many were
    /// written.
    pub async fn predict(&self, m: &Metrics, spec: &FeatureSpec, p: &SeqPredictor, version: u64, rows: &[Pending]) -> Result<usize> {
        // The last row of each key: a batch may hold a row and its update.
        let mut last = std::collections::HashMap::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate() {
            last.insert(r.record.key.as_deref(), i);
        }
        let mut x = Vec::with_capacity(rows.len() * spec.width());
        let mut ok = Vec::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate().filter(|(i, r)| last.get(&r.record.key.as_deref()) == Some(i)) {
            match spec.encode(&r.record, &mut x) {
                Ok(()) => {
                    say_notes(spec, &r.record, r.position.as_ref());
                    ok.push(&rows[i])
                }
                Err(e) => {
                    eprintln!("row with key {} at {}: {e}; not predicted", r.record.key.as_deref().unwrap_or("(none)"), position_text(r.position.as_ref()))
                }
            }
        }
        if ok.is_empty() {
            return Ok(0);
        }
        let outs = p.predict(&x, spec.width())?;
        let done = now_ms();
        let n = ok.len();
        let mut cols = Columns::with_capacity(n);
        let w = spec.width();
        for (i, (r, o)) in ok.iter().zip(outs).enumerate() {
            let (prediction, probability, value) = match spec.task {
                Task::Classification => {
                    let (i, prob) = argmax(&o);
                    (spec.classes[i].clone(), Some(prob), None)
                }
                Task::Regression => (o[0].to_string(), None, Some(o[0] as f64)),
            };
            let latency = live_latency_ms(r.commit_ts_ms, r.snapshot, done);
            match latency {
                Some(l) => m.latency.observe(l / 1e3),
                None => {
                    m.existing_predictions.inc();
                }
            }
            let class_name = self.names.as_ref().and_then(|n| prediction.parse::<usize>().ok().and_then(|k| n.get(k))).cloned();
            if i + super::live::Live::SHOWN >= n {
                m.live.prediction(Recent {
                    key: r.record.key.clone().unwrap_or_default(),
                    prediction: class_name.as_ref().map_or_else(|| prediction.clone(), |c| format!("{prediction} ({c})")),
                    probability,
                    version,
                    latency_ms: latency,
                    pixels: pixels(&x[i * w..(i + 1) * w]),
                });
            } else {
                m.live.counted(latency);
            }
            let position = position_text(r.position.as_ref());
            if let Some((publisher, topic)) = &self.topic {
                let key = r.record.key.as_deref().unwrap_or_default();
                let rec = TopicRecord {
                    row_key: key,
                    prediction: &prediction,
                    probability,
                    value,
                    model_version: version,
                    source_position: &position,
                    latency_ms: latency,
                    worker: &self.worker,
                    class_name: class_name.as_deref(),
                };
                publisher.send(topic, key, Some(&serde_json::to_vec(&rec)?)).await?;
            }
            cols.key.push(r.record.key.clone());
            cols.prediction.push(prediction);
            cols.probability.push(probability);
            cols.value.push(value);
            cols.position.push(position);
            cols.latency.push(latency);
            cols.class_name.push(class_name);
        }
        self.client
            .execute(
                &self.upsert,
                &[
                    &cols.key,
                    &cols.prediction,
                    &cols.probability,
                    &cols.value,
                    &(version as i64),
                    &cols.position,
                    &cols.latency,
                    &self.worker,
                    &cols.class_name,
                ],
            )
            .await?;
        m.predictions.inc_by(n as u64);
        Ok(n)
    }
}

/// One batch's predictions, column by column: the arrays of the upsert's `UNNEST`.
struct Columns {
    key: Vec<Option<String>>,
    prediction: Vec<String>,
    probability: Vec<Option<f32>>,
    value: Vec<Option<f64>>,
    position: Vec<String>,
    latency: Vec<Option<f64>>,
    class_name: Vec<Option<String>>,
}

impl Columns {
    fn with_capacity(n: usize) -> Self {
        Columns {
            key: Vec::with_capacity(n),
            prediction: Vec::with_capacity(n),
            probability: Vec::with_capacity(n),
            value: Vec::with_capacity(n),
            position: Vec::with_capacity(n),
            latency: Vec::with_capacity(n),
            class_name: Vec::with_capacity(n),
        }
    }
}

/// Says on stderr what a predicted row's encoding took on trust ([`FeatureSpec::notes`]): an
/// unseen category, a number given as text; the first 5 rows with notes, then a count every
/// 1,000.
pub fn say_notes(spec: &FeatureSpec, r: &Record, at: Option<&Position>) {
    let at = position_text(at);
    static ROWS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let notes = spec.notes(r);
    if notes.is_empty() {
        return;
    }
    let n = ROWS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    if n <= 5 {
        eprintln!("note: row with key {} at {at}: {}", r.key.as_deref().unwrap_or("(none)"), notes.join("; "));
    } else if n.is_multiple_of(1000) {
        eprintln!("note: {n} rows predicted so far had a category never seen in training or a number given as text");
    }
}
