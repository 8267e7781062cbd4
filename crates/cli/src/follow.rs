//! `predict --follow`: predict each new row as it arrives and write the prediction to stdout
//! (a JSON line), and optionally to a Kafka topic and a Postgres table. One record for every
//! model: the blog's images (here) and any table (`tabular.rs`) write the same columns, the
//! same names `run`'s predictions table uses (`row_key`, `prediction`, `probability`, `value`,
//! `model_version`, `source_position`, `latency_ms`, `class_name`), plus `label`, the true
//! label when the source row has one (the blog's images).

use anyhow::{Context, Result};
use tensorcdc_model::argmax;
use tensorcdc_model::sequential::checkpoint::Served;

use crate::args::PredictArgs;
use crate::source::{model_version, Item};

/// One prediction of `predict --follow` (and of the demo's step 7).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Prediction {
    pub key: Option<String>,
    /// The class as the model knows it (for the blog's images its index, `"3"`), or the value
    /// as text (regression).
    pub prediction: String,
    /// The class's probability (classification).
    pub probability: Option<f32>,
    /// The predicted value (regression).
    pub value: Option<f64>,
    pub model_version: String,
    pub position: String,
    pub latency_ms: Option<f64>,
    /// The class's name from `--classes` (the blog's images: digits or Fashion-MNIST's names).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    /// The source row's own label, when it has one (the blog's images carry it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

pub use tensorcdc_source::clock::{live_latency_ms, mark_start, now_ms, wait_true};

/// Predicts a batch of images; `classes` names the ten outputs.
pub fn predict_items(predictor: &Served, version: &str, classes: &[String], items: &[Item]) -> Result<Vec<Prediction>> {
    let mut px = Vec::with_capacity(items.len() * 784);
    for it in items {
        px.extend_from_slice(&it.example.pixels[..]);
    }
    let probs = crate::train::predict_pixels(predictor, &px)?;
    let done = now_ms();
    Ok(items
        .iter()
        .zip(probs)
        .map(|(it, p)| {
            let (digit, probability) = argmax(&p);
            Prediction {
                key: it.example.key.clone(),
                prediction: digit.to_string(),
                probability: Some(probability),
                value: None,
                model_version: version.to_string(),
                position: it.example.position.as_ref().map(ToString::to_string).unwrap_or_default(),
                latency_ms: live_latency_ms(it.commit_ts_ms, it.snapshot, done),
                class_name: Some(classes[digit].clone()),
                label: Some(it.example.label.to_string()),
            }
        })
        .collect())
}

impl Prediction {
    /// The table's columns after `id`, for `CREATE TABLE` (and `ADD COLUMN IF NOT EXISTS` on a
    /// table an older tensorcdc made).
    const COLUMNS: &'static str = "row_key TEXT, prediction TEXT, probability REAL, value DOUBLE PRECISION, model_version TEXT, \
                                   source_position TEXT, latency_ms DOUBLE PRECISION, class_name TEXT, label TEXT";
    /// The columns `params` fills, in order.
    const INSERT: &'static str = "row_key, prediction, probability, value, model_version, source_position, latency_ms, class_name, label";

    /// The values of `INSERT`, in order.
    fn params(&self) -> Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>> {
        vec![
            Box::new(self.key.clone()),
            Box::new(self.prediction.clone()),
            Box::new(self.probability),
            Box::new(self.value),
            Box::new(self.model_version.clone()),
            Box::new(self.position.clone()),
            Box::new(self.latency_ms),
            Box::new(self.class_name.clone()),
            Box::new(self.label.clone()),
        ]
    }
}

/// Writes predictions to a Postgres table (created if missing).
pub struct TableWriter {
    client: tokio_postgres::Client,
    insert: tokio_postgres::Statement,
}

impl TableWriter {
    pub async fn new(url: &str, table: &str) -> Result<Self> {
        if !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            anyhow::bail!("--predictions-table {table:?}: use letters, digits and '_'");
        }
        let client = tensorcdc_postgres::conn::connect(url).await.with_context(|| format!("--predictions-db {}", tensorcdc_postgres::conn::redact(url)))?;
        client
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {table}(id BIGSERIAL PRIMARY KEY, {}, predicted_at TIMESTAMPTZ DEFAULT now())",
                Prediction::COLUMNS
            ))
            .await?;
        // A table made by an older tensorcdc gets the columns added since; its `label` was a
        // SMALLINT (the image follower's), now text as any table's label may be.
        let add: Vec<String> = Prediction::COLUMNS.split(", ").map(|c| format!("ADD COLUMN IF NOT EXISTS {c}")).collect();
        client.batch_execute(&format!("ALTER TABLE {table} {}, ALTER COLUMN label TYPE TEXT", add.join(", "))).await?;
        let values: Vec<String> = (1..=Prediction::INSERT.split(',').count()).map(|i| format!("${i}")).collect();
        let insert = client.prepare(&format!("INSERT INTO {table}({}) VALUES ({})", Prediction::INSERT, values.join(", "))).await?;
        Ok(TableWriter { client, insert })
    }

    pub async fn write(&self, p: &Prediction) -> Result<()> {
        let values = p.params();
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = values.iter().map(|v| v.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
        self.client.execute(&self.insert, &refs).await?;
        Ok(())
    }
}

/// Where `predict --follow` sends each prediction: stdout (a JSON line), the
/// `--predictions-topic` (keyed by the source row), the `--predictions-table`; and the
/// latencies for the closing summary. One for the images' follower and the tables' one.
pub struct Outputs {
    publisher: Option<(tensorcdc_kafka::Publisher, String)>,
    table: Option<TableWriter>,
    latencies: Vec<f64>,
    /// Predictions of rows that were there before the process started (no latency).
    existing: usize,
    max: Option<usize>,
    pub n: usize,
}

impl Outputs {
    pub async fn new(a: &PredictArgs) -> Result<Self> {
        let publisher = match (&a.predictions_topic, &a.source.kafka) {
            (Some(t), Some(b)) => Some((tensorcdc_kafka::Publisher::new(b, &tensorcdc_kafka::settings(&a.source.kafka_settings)?)?, t.clone())),
            (Some(_), None) => anyhow::bail!("--predictions-topic needs --kafka"),
            _ => None,
        };
        let table = match &a.predictions_table {
            Some(t) => {
                let url = a.predictions_db.as_ref().or(a.source.source.as_ref()).context("--predictions-table needs --predictions-db URL (or --source)")?;
                Some(TableWriter::new(url, t).await?)
            }
            None => None,
        };
        Ok(Outputs { publisher, table, latencies: Vec::new(), existing: 0, max: a.max, n: 0 })
    }

    pub async fn emit(&mut self, p: &Prediction) -> Result<()> {
        println!("{}", serde_json::to_string(p)?);
        if let Some((pubr, topic)) = &self.publisher {
            pubr.send(topic, p.key.as_deref().unwrap_or(""), Some(&serde_json::to_vec(p)?)).await?;
        }
        if let Some(t) = &self.table {
            t.write(p).await?;
        }
        match p.latency_ms {
            Some(l) => self.latencies.push(l),
            None => self.existing += 1,
        }
        self.n += 1;
        Ok(())
    }

    /// True once `--max` predictions were made.
    pub fn done(&self) -> bool {
        self.max.is_some_and(|m| self.n >= m)
    }

    /// The closing line on stderr (`extra` inside its parenthesis, after the count of rows
    /// already there).
    pub fn summary(&self, extra: &str) {
        let latency = match (percentile(&self.latencies, 50.0), percentile(&self.latencies, 99.0)) {
            (Some(p50), Some(p99)) => {
                format!("commit-to-prediction latency of the {} rows committed while running: p50 {p50:.1} ms, p99 {p99:.1} ms", self.latencies.len())
            }
            _ => "no row committed while running, so no latency".to_string(),
        };
        eprintln!("{} predictions ({} of rows already there{extra}); {latency}", self.n, self.existing);
    }
}

/// p-th percentile (0..=100) of `v`.
pub fn percentile(v: &[f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let idx = ((p / 100.0) * (s.len() - 1) as f64).round() as usize;
    Some(s[idx])
}

/// `predict --follow` of an image model ([`crate::commands::predict`] sends a table's model
/// to `tabular::follow`).
pub fn follow(a: PredictArgs) -> Result<()> {
    let predictor = crate::train::load_image_model(&a.model, "predict --follow of images")?;
    let version = model_version(&a.model);
    let classes = tensorcdc_dataset::mnist::class_names(&a.classes).map_err(anyhow::Error::msg)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let mut stream = a.source.stream("mnist_manual", -1).await?;
        let mut out = Outputs::new(&a).await?;
        let shutdown = crate::capture::shutdown_signal();
        loop {
            let batch = tokio::select! {
                b = stream.next_batch(256) => b?,
                _ = wait_true(shutdown.clone()) => None,
            };
            let Some(items) = batch else { break };
            for p in predict_items(&predictor, &version, &classes, &items)? {
                out.emit(&p).await?;
                if out.done() {
                    break;
                }
            }
            if out.done() {
                break;
            }
        }
        stream.close().await?;
        out.summary("");
        Ok(())
    })
}
