//! Any table, any model: `train --label COL` (and `--features`, `--layers`, `--model-spec`),
//! `evaluate` and `predict --row` with a checkpoint that holds its feature spec.
//!
//! Rows come from Postgres in-process (typed) or a Kafka topic of Debezium JSON (with or
//! without schemas), into a keyed set (updates replace, deletes remove); the feature spec is
//! fitted on the training rows and saved with the model.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use tensorcdc_dataset::features::cell::record_of_json;
use tensorcdc_dataset::features::{EncodeError, FeatureSpec, SpecOptions, Task};
use tensorcdc_model::device_from_env;
use tensorcdc_model::sequential::{checkpoint, Activation, CompileConfig, Data, FitMetrics, FitSettings, Loss, SeqTrainer, SequentialSpec};
use tensorcdc_source::Rows;

use crate::args::ModelArgs;
use crate::source::SourceArgs;

/// Reads everything available now: the table through an in-process snapshot, or a Kafka
/// topic of Debezium JSON or CSV up to its high watermark (`tensorcdc-source`).
pub async fn read_rows(src: &SourceArgs) -> Result<Rows> {
    Ok(tensorcdc_source::bounded_rows(&src.config()?).await?)
}

pub(crate) use tensorcdc_learn::run::{position_text, say_notes};

fn report_skipped(skipped: &[(Option<String>, EncodeError)], total: usize) {
    if skipped.is_empty() {
        return;
    }
    eprintln!("skipped {} of {total} rows:", skipped.len());
    for (k, e) in skipped.iter().take(5) {
        eprintln!("  row with key {}: {e}", k.as_deref().unwrap_or("(none)"));
    }
}

fn describe(loss: Loss, m: &FitMetrics) -> String {
    if loss.is_classification() {
        format!("loss: {:.4} - accuracy: {:.4}", m.loss(), m.accuracy())
    } else {
        format!("loss: {:.4} - mse: {:.4} - rmse: {:.4} - mae: {:.4}", m.loss(), m.mse(), m.mse().sqrt(), m.mae())
    }
}

/// `train --label ...`.
pub fn train(src: &SourceArgs, m: &ModelArgs, settings: FitSettings, out: &std::path::Path, curves: Option<&std::path::Path>) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let rows = rt.block_on(read_rows(src))?;
    let label = m.label.clone().context("--label COL is needed to learn from a table")?;
    let opts = SpecOptions {
        label,
        features: m.features.clone(),
        exclude: rows.key_columns.iter().cloned().collect(),
        scaling: m.scaling.parse().map_err(anyhow::Error::msg)?,
        nulls: m.nulls.parse().map_err(anyhow::Error::msg)?,
        task: m.task.as_deref().map(str::parse).transpose().map_err(anyhow::Error::msg)?,
    };
    let spec = FeatureSpec::fit(rows.set.iter(), &opts).map_err(anyhow::Error::msg)?;
    let (data, skipped) = Data::encode(&spec, rows.set.iter());
    report_skipped(&skipped, rows.set.len());
    if data.is_empty() {
        bail!("no training examples ({} records read, {} rows, {} skipped)", rows.report.records, rows.set.len(), skipped.len());
    }
    let model = match (&m.model_spec, &m.layers) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("--model-spec {}", path.display()))?;
            SequentialSpec::from_keras_json(&text, spec.width()).with_context(|| format!("--model-spec {}", path.display()))?
        }
        (None, layers) => {
            let hidden = layers.as_deref().unwrap_or(&[64, 64]);
            SequentialSpec::check_hidden(hidden)?;
            SequentialSpec::dense(spec.width(), hidden, spec.outputs())
        }
    };
    let mut settings = settings;
    let mut compiled_loss = None;
    if let Some(path) = &m.compile_config {
        let text = std::fs::read_to_string(path).with_context(|| format!("--compile-config {}", path.display()))?;
        let cc = CompileConfig::from_keras_json(&text).with_context(|| format!("--compile-config {}", path.display()))?;
        settings.optimizer = Some(cc.optimizer);
        if let Some(l) = cc.loss {
            if l.is_classification() && cc.from_probabilities && model.final_activation() == Activation::Linear {
                bail!("--compile-config: the loss takes probabilities (from_logits false) but the model's last layer is linear; use from_logits=True or end with softmax/sigmoid");
            }
            compiled_loss = Some(l);
        }
    }
    let loss = match (m.loss.as_ref().map(|l| Loss::parse(l)).transpose().map_err(anyhow::Error::msg)?.or(compiled_loss), spec.task) {
        (Some(l), _) => l,
        (None, Task::Classification) if model.outputs() == 1 && spec.classes.len() == 2 => Loss::BinaryCrossentropy,
        (None, Task::Classification) => Loss::SparseCategoricalCrossentropy,
        (None, Task::Regression) => Loss::MeanSquaredError,
    };
    match (loss.is_classification(), spec.task) {
        (true, Task::Regression) => {
            bail!("loss {loss:?} needs classes, but the label {:?} is a number (regression); give --task classification or a regression loss", spec.label)
        }
        (false, Task::Classification) => bail!(
            "loss {loss:?} is for regression, but the label {:?} makes {} classes; give --task regression or a classification loss",
            spec.label,
            spec.classes.len()
        ),
        _ => {}
    }
    if loss == Loss::BinaryCrossentropy && spec.classes.len() != 2 {
        bail!("binary_crossentropy needs two classes; the label {:?} has {} ({})", spec.label, spec.classes.len(), spec.classes.join(", "));
    }
    if loss == Loss::SparseCategoricalCrossentropy && model.outputs() != spec.classes.len() {
        bail!("the model has {} outputs but the label {:?} has {} classes ({})", model.outputs(), spec.label, spec.classes.len(), spec.classes.join(", "));
    }
    let cols: Vec<String> = spec.columns.iter().map(|c| format!("{} ({:?}, {})", c.name, c.kind, c.width)).collect();
    println!(
        "training on {} rows ({} records read, {} skipped): {} features from {}",
        data.len(),
        rows.report.records,
        skipped.len(),
        spec.width(),
        cols.join(", ")
    );
    match spec.task {
        Task::Classification => println!("label {:?}: {} classes ({})", spec.label, spec.classes.len(), spec.classes.join(", ")),
        Task::Regression => println!("label {:?}: regression", spec.label),
    }
    let mut t = SeqTrainer::new(model, loss, settings.clone(), &device_from_env()?)?;
    let t0 = Instant::now();
    let (mut losses, mut second) = (Vec::new(), Vec::new());
    for _ in 0..settings.epochs {
        let e = t.fit_epoch(&data, |_| {});
        println!("epoch {}/{} - {:.3}s - {}", e.epoch, settings.epochs, e.elapsed.as_secs_f64(), describe(loss, &e.metrics));
        losses.push(e.metrics.loss());
        second.push(if loss.is_classification() { e.metrics.accuracy() } else { e.metrics.mae() });
    }
    let secs = t0.elapsed().as_secs_f64();
    println!("trained {} epochs in {secs:.3}s ({:.5} s/epoch)", settings.epochs, secs / settings.epochs.max(1) as f64);
    checkpoint::save(&t, &spec, out)?;
    println!("checkpoint: {}", out.display());
    if let Some(path) = curves {
        let name = if loss.is_classification() { "ACCURACY" } else { "MAE" };
        crate::pictures::curves_png(path, &[("LOSS", losses), (name, second)]).with_context(|| format!("--curves {}", path.display()))?;
        println!("curves: {}", path.display());
    }
    Ok(())
}

/// `evaluate` with a general checkpoint.
pub fn evaluate(src: &SourceArgs, model: &std::path::Path) -> Result<()> {
    let (features, loss, p) = checkpoint::load_served(model, &device_from_env()?)?;
    let rt = tokio::runtime::Runtime::new()?;
    let rows = rt.block_on(read_rows(src))?;
    let (data, skipped) = Data::encode(&features, rows.set.iter());
    report_skipped(&skipped, rows.set.len());
    if data.is_empty() {
        bail!("nothing to evaluate: {} records read, {} rows, {} skipped", rows.report.records, rows.set.len(), skipped.len());
    }
    let m = p.evaluate(&data, 1024)?;
    println!("{} examples - {}", m.n, describe(loss, &m));
    Ok(())
}

/// `predict --row '{"col": value, ...}'` with a general checkpoint.
pub fn predict_row(model: &std::path::Path, row: &str) -> Result<()> {
    let (features, _, p) = checkpoint::load_served(model, &device_from_env()?)?;
    let obj: serde_json::Map<String, serde_json::Value> = serde_json::from_str(row).context("--row: expected a JSON object of column values")?;
    let record = record_of_json(&obj, None, None);
    let mut x = Vec::new();
    features.encode(&record, &mut x).map_err(|e| anyhow::anyhow!("--row: {e}"))?;
    for n in features.notes(&record) {
        eprintln!("note: --row {n}");
    }
    print_prediction(&features, &p, &x)
}

fn print_prediction(spec: &FeatureSpec, p: &checkpoint::Served, x: &[f32]) -> Result<()> {
    let out = p.predict(x, spec.width())?.remove(0);
    match spec.task {
        Task::Classification => {
            let (i, prob) = tensorcdc_model::argmax(&out);
            println!("prediction: {} ({:.1}%)", spec.classes[i], prob * 100.0);
            let list: Vec<String> = spec.classes.iter().zip(&out).map(|(c, p)| format!("{c}: {p:.4}")).collect();
            println!("probabilities: {}", list.join("  "));
        }
        Task::Regression => println!("prediction: {:.6}", out[0]),
    }
    Ok(())
}

/// `predict --follow` with a checkpoint trained on any table: every inserted or updated row
/// is predicted as it arrives (deletes are passed over).
pub fn follow(a: &crate::args::PredictArgs) -> Result<()> {
    let (spec, _, p) = checkpoint::load_served(&a.model, &device_from_env()?).context("loading the model")?;
    let version = crate::source::model_version(&a.model);
    if a.source.source.is_some() && a.source.table.is_none() {
        bail!("--source needs --table T (the table to follow)");
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let mut stream = a.source.stream("", -1).await?;
        let mut outputs = crate::follow::Outputs::new(a).await?;
        let shutdown = crate::capture::shutdown_signal();
        let mut skipped = 0usize;
        loop {
            let batch = tokio::select! {
                b = stream.next_changes(256) => b?,
                _ = crate::follow::wait_true(shutdown.clone()) => None,
            };
            let Some(items) = batch else { break };
            let mut x = Vec::new();
            let mut rows = Vec::new();
            for it in &items {
                let tensorcdc_dataset::features::Change::Upsert(r) = &it.change else {
                    continue;
                };
                match spec.encode(r, &mut x) {
                    Ok(()) => {
                        say_notes(&spec, r, it.position.as_ref());
                        rows.push((r.key.clone(), it))
                    }
                    Err(e) => {
                        skipped += 1;
                        eprintln!("row with key {} at {}: {e}; not predicted", r.key.as_deref().unwrap_or("(none)"), position_text(it.position.as_ref()));
                    }
                }
            }
            if rows.is_empty() {
                continue;
            }
            let outs = p.predict(&x, spec.width())?;
            let done = crate::follow::now_ms();
            for ((key, it), out) in rows.into_iter().zip(outs) {
                let (prediction, probability, value) = match spec.task {
                    Task::Classification => {
                        let (i, prob) = tensorcdc_model::argmax(&out);
                        (spec.classes[i].clone(), Some(prob), None)
                    }
                    Task::Regression => (out[0].to_string(), None, Some(out[0] as f64)),
                };
                outputs
                    .emit(&crate::follow::Prediction {
                        key,
                        prediction,
                        probability,
                        value,
                        model_version: version.clone(),
                        position: position_text(it.position.as_ref()),
                        latency_ms: crate::follow::live_latency_ms(it.commit_ts_ms, it.snapshot, done),
                        class_name: None,
                        label: None,
                    })
                    .await?;
                if outputs.done() {
                    break;
                }
            }
            if outputs.done() {
                break;
            }
        }
        stream.close().await?;
        outputs.summary(&format!(", {skipped} not predicted"));
        Ok(())
    })
}
