//! The blog's image commands: `train` from images, `evaluate` and `predict --pixels` of an
//! image model. The model, trainer, predictor and checkpoint are the general ones
//! (`tensorcdc_model::sequential`): the blog's network is `SequentialSpec::mnist()`
//! (`Dense(128, relu) → Dense(10)`) on the MNIST feature preset (`FeatureSpec::mnist()`: 784 bytes / 255). What is the
//! blog's own here is the I/O: images in, digits and pictures out.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use tensorcdc_dataset::features::FeatureSpec;
use tensorcdc_dataset::mnist::{self, Split};
use tensorcdc_dataset::PIXELS;
use tensorcdc_model::sequential::checkpoint::{self, Served};
use tensorcdc_model::sequential::{Data, FitEpoch, FitMetrics, FitSettings, Loss, SeqTrainer, SequentialSpec};
use tensorcdc_model::{argmax, device_from_env};

use crate::args::{EvaluateArgs, PredictArgs, TrainArgs};
use crate::pictures;
use crate::progress::EpochBar;
use crate::source::SourceArgs;

/// Trains the blog's network on `train_set` with the Keras-like progress line; returns the
/// trainer and epochs.
pub fn fit(data: &Data, settings: FitSettings) -> Result<(SeqTrainer, Vec<FitEpoch>)> {
    let epochs = settings.epochs;
    let steps = data.len().div_ceil(settings.batch_size.max(1));
    let mut trainer = SeqTrainer::new(SequentialSpec::mnist(), Loss::SparseCategoricalCrossentropy, settings, &device_from_env()?)?;
    let mut bar = EpochBar::new();
    let mut ends = Vec::new();
    for _ in 0..epochs {
        let e = trainer.fit_epoch(data, |p| bar.on_step(p, epochs));
        bar.on_epoch(&e, steps);
        ends.push(e);
    }
    Ok((trainer, ends))
}

/// Saves an image model: the general checkpoint with the MNIST preset as its feature spec.
pub fn save(trainer: &SeqTrainer, dir: &std::path::Path) -> Result<()> {
    Ok(checkpoint::save(trainer, &FeatureSpec::mnist(), dir)?)
}

/// Adds a batch of images to running metrics (Keras' `evaluate`, a batch at a time, so rows
/// can be evaluated as they arrive).
pub fn evaluate_batch(p: &Served, pixels: &[u8], labels: &[u8], m: &mut FitMetrics) -> Result<()> {
    if !labels.is_empty() {
        m.add(&p.evaluate(&Data::images(pixels, labels), 1024)?);
    }
    Ok(())
}

/// Class probabilities of `n` images of contiguous pixel bytes.
pub fn predict_pixels(p: &Served, pixels: &[u8]) -> Result<Vec<Vec<f32>>> {
    if pixels.is_empty() || !pixels.len().is_multiple_of(PIXELS) {
        bail!("{} pixel values, expected a multiple of {PIXELS} (28x28)", pixels.len());
    }
    Ok(p.predict(&Data::images(pixels, &[]).x, PIXELS)?)
}

/// An image model (784 inputs, 10 classes) for serving: tensorcdc's own, a Keras or an ONNX
/// file, named in the error when it takes something else.
pub fn load_image_model(path: &std::path::Path, what: &str) -> Result<Served> {
    let (features, _, p) = checkpoint::load_served(path, &device_from_env()?).context("loading the model")?;
    if features.width() != PIXELS || features.outputs() != 10 {
        bail!(
            "{what} needs an image model of {PIXELS} inputs and 10 classes; {} takes {} features and {} outputs",
            path.display(),
            features.width(),
            features.outputs()
        );
    }
    Ok(p)
}

/// `train` of the blog's network on images ([`crate::commands::train`] sends a table with
/// `--label` to `tabular::train`).
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
    let cfg = FitSettings { epochs: a.epochs, batch_size: a.batch_size, learning_rate: a.learning_rate, seed: a.seed, optimizer: None, threads: a.threads };
    println!("training on {} examples ({} records read, {} skipped)", train_set.len(), report.records, report.skipped);
    // The pixels / 255 once, as Keras' users do before `fit`.
    let data = Data::images(&train_set.pixels, &train_set.labels);
    let t0 = Instant::now();
    let (trainer, ends) = fit(&data, cfg)?;
    let total = t0.elapsed();
    let per_epoch = total.as_secs_f64() / ends.len().max(1) as f64;
    println!("trained {} epochs in {:.2}s ({per_epoch:.3} s/epoch)", ends.len(), total.as_secs_f64());
    save(&trainer, &a.out)?;
    println!("checkpoint: {}", a.out.display());
    if let Some(test) = test_set {
        let m = trainer.predictor().evaluate(&Data::images(&test.pixels, &test.labels), 1024);
        println!("test: {} examples - loss: {:.4} - accuracy: {:.4}", m.n, m.loss(), m.accuracy());
    }
    if let Some(path) = &a.curves {
        curves(path, &ends)?;
        println!("curves: {}", path.display());
    }
    Ok(())
}

/// The training curves PNG.
pub fn curves(path: &std::path::Path, ends: &[FitEpoch]) -> Result<()> {
    let loss: Vec<f64> = ends.iter().map(|e| e.metrics.loss()).collect();
    let acc: Vec<f64> = ends.iter().map(|e| e.metrics.accuracy()).collect();
    pictures::curves_png(path, &[("LOSS", loss), ("ACCURACY", acc)])?;
    Ok(())
}

/// `evaluate` of an image model: the IDX test images (`--data`), a bounded read of the
/// blog's rows, or a stream of them (`--group`).
pub fn evaluate(a: EvaluateArgs) -> Result<()> {
    let predictor = load_image_model(&a.model, "evaluate on images")?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        if a.source.group.is_none() && a.source.source.is_none() {
            let (test, report) = a.source.bounded(Split::Test).await?;
            if test.is_empty() {
                anyhow::bail!("nothing to evaluate: {} records read, {} skipped, no example", report.records, report.skipped);
            }
            let m = predictor.evaluate(&Data::images(&test.pixels, &test.labels), 1024)?;
            println!("{} examples - loss: {:.4} - accuracy: {:.4}", m.n, m.loss(), m.accuracy());
            if report.skipped > 0 {
                println!("skipped {} records that did not decode", report.skipped);
            }
            return Ok(());
        }
        let m = evaluate_stream(&predictor, &a.source, |m| {
            println!("rows: {} - loss: {:.4} - accuracy: {:.4}", m.n, m.loss(), m.accuracy());
        })
        .await?;
        if m.n == 0 {
            anyhow::bail!("nothing to evaluate: the stream ended without an example");
        }
        println!("final: {} examples - loss: {:.4} - accuracy: {:.4}", m.n, m.loss(), m.accuracy());
        Ok(())
    })
}

/// Evaluates rows as they arrive until the stream times out; `progress` after each batch.
pub async fn evaluate_stream(predictor: &Served, source: &SourceArgs, mut progress: impl FnMut(&FitMetrics)) -> Result<FitMetrics> {
    let mut stream = source.stream("mnist_test", 9000).await?;
    let mut m = FitMetrics::default();
    let (mut px, mut labels) = (Vec::new(), Vec::new());
    while let Some(items) = stream.next_batch(1024).await? {
        px.clear();
        labels.clear();
        for it in &items {
            px.extend_from_slice(&it.example.pixels[..]);
            labels.push(it.example.label);
        }
        evaluate_batch(predictor, &px, &labels, &mut m)?;
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
    // Any image model (tensorcdc's, a Keras or an ONNX file of 784 inputs): the pixels / 255,
    // as the MNIST preset encodes them.
    let p = load_image_model(&a.model, "--pixels (give a table's row with --row)")?;
    let probs = predict_pixels(&p, &pixels)?.remove(0);
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
