//! `train`, `evaluate` and `predict`.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use tensorcdc_dataset::mnist::{self, Split};
use tensorcdc_dataset::{Examples, PIXELS};
use tensorcdc_model::{argmax, checkpoint, device_from_env, EpochEnd, Metrics, MlpConfig, Predictor, TrainConfig, Trainer};

use crate::args::{EvaluateArgs, PredictArgs, TrainArgs};
use crate::pictures;
use crate::progress::EpochBar;
use crate::source::SourceArgs;

/// Trains on `train_set` with the Keras-like progress line; returns the trainer and epochs.
pub fn fit(train_set: &Examples, cfg: TrainConfig) -> Result<(Trainer, Vec<EpochEnd>)> {
    let mut trainer = Trainer::new(MlpConfig::default(), cfg.clone(), &device_from_env()?)?;
    let steps = train_set.len().div_ceil(cfg.batch_size);
    let mut bar = EpochBar::new();
    let mut ends = Vec::new();
    for _ in 0..cfg.epochs {
        let e = trainer.fit_epoch(train_set, |p| bar.on_step(p));
        bar.on_epoch(&e, steps);
        ends.push(e);
    }
    Ok((trainer, ends))
}

/// `train` of the blog's network (MNIST examples; [`crate::commands::train`] sends the rest to
/// the general path).
pub fn train(a: TrainArgs) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let (train_set, report) = rt.block_on(a.source.bounded(Split::Train))?;
    if train_set.is_empty() {
        let hint = if report.records > 0 && report.skipped == report.records {
            format!(
                ": without --label, train reads the blog's images (a {:?} class and {:?} of 784 bytes). \
                 For a table of your own, name its label column with --label COL (features: every other column, or --features)",
                a.source.label_field, a.source.features_field
            )
        } else {
            String::new()
        };
        bail!("no training examples ({} records read, {} skipped){hint}", report.records, report.skipped);
    }
    let test_set = match &a.source.data {
        Some(dir) => mnist::load(dir, Split::Test).ok(),
        None => None,
    };
    let cfg =
        TrainConfig { epochs: a.epochs, batch_size: a.batch_size, learning_rate: a.learning_rate, seed: a.seed, threads: a.threads, ..Default::default() };
    println!("training on {} examples ({} records read, {} skipped)", train_set.len(), report.records, report.skipped);
    let t0 = Instant::now();
    let (trainer, ends) = fit(&train_set, cfg)?;
    let total = t0.elapsed();
    let per_epoch = total.as_secs_f64() / ends.len().max(1) as f64;
    println!("trained {} epochs in {:.2}s ({per_epoch:.3} s/epoch)", ends.len(), total.as_secs_f64());
    checkpoint::save(&trainer, &a.out)?;
    println!("checkpoint: {}", a.out.display());
    if let Some(test) = test_set {
        let m = trainer.predictor().evaluate(&test, 1024);
        println!("test: {} examples - loss: {:.4} - accuracy: {:.4}", m.examples, m.loss(), m.accuracy());
    }
    if let Some(path) = &a.curves {
        curves(path, &ends)?;
        println!("curves: {}", path.display());
    }
    Ok(())
}

/// The training curves PNG.
pub fn curves(path: &std::path::Path, ends: &[EpochEnd]) -> Result<()> {
    let loss: Vec<f64> = ends.iter().map(|e| e.metrics.loss()).collect();
    let acc: Vec<f64> = ends.iter().map(|e| e.metrics.accuracy()).collect();
    pictures::curves_png(path, &[("LOSS", loss), ("ACCURACY", acc)])?;
    Ok(())
}

/// `evaluate` of a checkpoint of the blog's network ([`crate::commands::evaluate`] sends the
/// rest to the general path).
pub fn evaluate(a: EvaluateArgs) -> Result<()> {
    let (_, predictor) = checkpoint::load(&a.model, &device_from_env()?)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        if a.source.group.is_none() && a.source.source.is_none() {
            let (test, report) = a.source.bounded(Split::Test).await?;
            if test.is_empty() {
                anyhow::bail!("nothing to evaluate: {} records read, {} skipped, no example", report.records, report.skipped);
            }
            let m = predictor.evaluate(&test, 1024);
            println!("{} examples - loss: {:.4} - accuracy: {:.4}", m.examples, m.loss(), m.accuracy());
            if report.skipped > 0 {
                println!("skipped {} records that did not decode", report.skipped);
            }
            return Ok(());
        }
        let m = evaluate_stream(&predictor, &a.source, |m| {
            println!("rows: {} - loss: {:.4} - accuracy: {:.4}", m.examples, m.loss(), m.accuracy());
        })
        .await?;
        if m.examples == 0 {
            anyhow::bail!("nothing to evaluate: the stream ended without an example");
        }
        println!("final: {} examples - loss: {:.4} - accuracy: {:.4}", m.examples, m.loss(), m.accuracy());
        Ok(())
    })
}

/// `evaluate --data DIR` with an image model that is not the blog's own (a general
/// checkpoint, a Keras or an ONNX file of 784 inputs and 10 classes): the IDX test images,
/// pixels / 255 as the MNIST preset encodes them.
pub(crate) fn evaluate_images(a: &EvaluateArgs) -> Result<()> {
    use tensorcdc_model::sequential::{checkpoint::load_served, Data, Targets};
    let (features, _, p) = load_served(&a.model, &device_from_env()?).context("loading the model")?;
    if features.width() != PIXELS || features.outputs() != 10 {
        bail!(
            "--data holds 28x28 images; {} takes {} features and {} outputs: evaluate it on its table (--source URL --table T)",
            a.model.display(),
            features.width(),
            features.outputs()
        );
    }
    let rt = tokio::runtime::Runtime::new()?;
    let (test, _) = rt.block_on(a.source.bounded(Split::Test))?;
    let mut x = vec![0f32; test.pixels.len()];
    tensorcdc_dataset::scale_pixels(&test.pixels, &mut x);
    let data = Data { x, width: PIXELS, y: Targets::Classes(test.labels.iter().map(|&l| l as i64).collect()) };
    let m = p.evaluate(&data, 1024)?;
    println!("{} examples - loss: {:.4} - accuracy: {:.4}", m.n, m.loss(), m.accuracy());
    Ok(())
}

/// Evaluates rows as they arrive until the stream times out; `progress` after each batch.
pub async fn evaluate_stream(predictor: &Predictor, source: &SourceArgs, mut progress: impl FnMut(&Metrics)) -> Result<Metrics> {
    let mut stream = source.stream("mnist_test", 9000).await?;
    let mut m = Metrics::default();
    let (mut px, mut labels) = (Vec::new(), Vec::new());
    while let Some(items) = stream.next_batch(1024).await? {
        px.clear();
        labels.clear();
        for it in &items {
            px.extend_from_slice(&it.example.pixels[..]);
            labels.push(it.example.label);
        }
        predictor.evaluate_batch(&px, &labels, &mut m);
        progress(&m);
    }
    let report = stream.close().await?;
    if report.skipped > 0 {
        eprintln!("skipped {} of {} records that did not decode", report.skipped, report.records);
    }
    Ok(m)
}

/// Parses 784 comma-separated values 0..=255 (bare, or in `[...]` as a JSON or Python list
/// prints them), naming the bad one.
pub fn parse_pixels(text: &str) -> Result<Vec<u8>> {
    let t = text.trim();
    let t = t.strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or(t);
    let values: Vec<&str> = t.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    if values.len() != PIXELS {
        bail!("--pixels has {} values, expected {PIXELS} (28x28, comma-separated)", values.len());
    }
    values
        .iter()
        .enumerate()
        .map(|(i, v)| match v.parse::<u32>() {
            Ok(p) if p <= 255 => Ok(p as u8),
            Ok(p) => bail!("--pixels value {} (index {i}) is {p}, expected 0..=255", i + 1),
            Err(_) => bail!("--pixels value {} (index {i}) is {v:?}, not a number 0..=255", i + 1),
        })
        .collect()
}

/// `predict --pixels` ([`crate::commands::predict`] sends `--follow` and `--row` on).
pub fn predict(a: PredictArgs) -> Result<()> {
    let pixels = parse_pixels(a.pixels.as_deref().unwrap_or_default())?;
    let probs = if tensorcdc_model::sequential::checkpoint::is_sequential(&a.model) {
        // A general checkpoint, a Keras file or an ONNX graph of 784 inputs: the pixels / 255, as the MNIST preset encodes them.
        let (features, _, p) = tensorcdc_model::sequential::checkpoint::load_served(&a.model, &device_from_env()?).context("loading the model")?;
        if features.width() != PIXELS || features.outputs() != 10 {
            bail!(
                "--pixels needs an image model of {PIXELS} inputs and 10 classes; {} takes {} features: give a row with --row",
                a.model.display(),
                features.width()
            );
        }
        let mut x = vec![0f32; PIXELS];
        tensorcdc_dataset::scale_pixels(&pixels, &mut x);
        p.predict(&x, PIXELS)?.remove(0)
    } else {
        let (_, predictor) = checkpoint::load(&a.model, &device_from_env()?).context("loading the model")?;
        predictor.predict(&pixels)?.remove(0)
    };
    let classes = mnist::class_names(&a.classes).map_err(anyhow::Error::msg)?;
    let (digit, p) = argmax(&probs);
    print!("{}", pictures::terminal(&pixels));
    println!("prediction: {} ({:.1}%)", classes[digit], p * 100.0);
    let list: Vec<String> = probs.iter().zip(&classes).map(|(p, c)| format!("{c}: {p:.4}")).collect();
    println!("probabilities: {}", list.join("  "));
    if let Some(path) = &a.png {
        pictures::grid_png(path, &[pictures::Panel { pixels: &pixels, title: format!("{} {:.0}%", classes[digit], p * 100.0) }], 1)?;
        println!("picture: {}", path.display());
    }
    Ok(())
}
