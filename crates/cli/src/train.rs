//! `train`, `evaluate` and `predict`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use tensorcdc_dataset::mnist::{self, Split};
use tensorcdc_dataset::{Examples, PIXELS};
use tensorcdc_model::{argmax, checkpoint, default_device, MlpConfig, TrainConfig, Trainer};

use crate::pictures;
use crate::progress::EpochBar;

#[derive(clap::Args)]
pub struct DataArgs {
    /// Directory holding the four MNIST IDX files.
    #[arg(long)]
    pub data: PathBuf,
    /// Use only the first N examples of each split.
    #[arg(long)]
    pub limit: Option<usize>,
}

impl DataArgs {
    fn load(&self, split: Split) -> Result<Examples> {
        let ex = mnist::load(&self.data, split)?;
        Ok(match self.limit {
            Some(n) => ex.truncate(n),
            None => ex,
        })
    }
}

#[derive(clap::Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Checkpoint folder to write (config.json + model.bpk).
    #[arg(long, default_value = "model")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 0.001)]
    pub learning_rate: f64,
    /// Seed of the weight initialisation and of each epoch's shuffle.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Write the training curves (loss, accuracy by epoch) to this PNG.
    #[arg(long)]
    pub curves: Option<PathBuf>,
}

pub fn train(a: TrainArgs) -> Result<()> {
    let train_set = a.data.load(Split::Train)?;
    let test_set = a.data.load(Split::Test).ok();
    let cfg = TrainConfig { epochs: a.epochs, batch_size: a.batch_size, learning_rate: a.learning_rate, seed: a.seed, ..Default::default() };
    let mut trainer = Trainer::new(MlpConfig::default(), cfg, &default_device())?;
    println!("training on {} examples from {}", train_set.len(), a.data.data.display());
    let steps = train_set.len().div_ceil(a.batch_size);
    let mut bar = EpochBar::new();
    let t0 = Instant::now();
    let mut ends = Vec::new();
    for _ in 0..a.epochs {
        let e = trainer.fit_epoch(&train_set, |p| bar.on_step(p));
        bar.on_epoch(&e, steps);
        ends.push(e);
    }
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
        let loss: Vec<f64> = ends.iter().map(|e| e.metrics.loss()).collect();
        let acc: Vec<f64> = ends.iter().map(|e| e.metrics.accuracy()).collect();
        pictures::curves_png(path, &[("LOSS", loss), ("ACCURACY", acc)])?;
        println!("curves: {}", path.display());
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct EvaluateArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Checkpoint folder written by `train`.
    #[arg(long, default_value = "model")]
    pub model: PathBuf,
}

pub fn evaluate(a: EvaluateArgs) -> Result<()> {
    let (_, predictor) = checkpoint::load(&a.model, &default_device())?;
    let test = a.data.load(Split::Test)?;
    let m = predictor.evaluate(&test, 1024);
    println!("{} examples - loss: {:.4} - accuracy: {:.4}", m.examples, m.loss(), m.accuracy());
    Ok(())
}

#[derive(clap::Args)]
pub struct PredictArgs {
    /// Checkpoint folder written by `train`.
    #[arg(long, default_value = "model")]
    pub model: PathBuf,
    /// 784 comma-separated pixel values 0..=255 (row-major 28x28).
    #[arg(long)]
    pub pixels: String,
    /// Also write the digit, enlarged, with the prediction as its title.
    #[arg(long)]
    pub png: Option<PathBuf>,
}

/// Parses 784 comma-separated values 0..=255, naming the bad one.
pub fn parse_pixels(text: &str) -> Result<Vec<u8>> {
    let values: Vec<&str> = text.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
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

pub fn predict(a: PredictArgs) -> Result<()> {
    let pixels = parse_pixels(&a.pixels)?;
    let (_, predictor) = checkpoint::load(&a.model, &default_device()).context("loading the model")?;
    let probs = predictor.predict(&pixels)?.remove(0);
    let (digit, p) = argmax(&probs);
    print!("{}", pictures::terminal(&pixels));
    println!("prediction: {digit} ({:.1}%)", p * 100.0);
    let list: Vec<String> = probs.iter().enumerate().map(|(i, p)| format!("{i}: {p:.4}")).collect();
    println!("probabilities: {}", list.join("  "));
    if let Some(path) = &a.png {
        pictures::grid_png(path, &[pictures::Panel { pixels: &pixels, title: format!("PRED {digit} {:.0}%", p * 100.0) }], 1)?;
        println!("picture: {}", path.display());
    }
    Ok(())
}
