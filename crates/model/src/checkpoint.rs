//! Checkpoints of the blog's network written before there was one trainer: a folder with
//! `config.json` (layer sizes, training settings, epochs done, the SHA-256 of the weights) and
//! `model.bpk` (`fc1`, `fc2` in burn's burnpack format). They still load, as the Sequential
//! model they are (`Dense(hidden, relu) → Dense(classes)` on the MNIST preset), through
//! [`crate::sequential::checkpoint::load`]; new checkpoints are written as `model.json`.

use std::path::Path;

use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::Device;
use serde::Deserialize;
use tensorcdc_dataset::features::FeatureSpec;

use crate::mlp::MlpConfig;
use crate::sequential::checkpoint::SeqMeta;
use crate::sequential::{net::Net, FitSettings, Loss, OptimizerSpec, SeqPredictor, SequentialSpec};
use crate::ModelError;

pub const CONFIG: &str = "config.json";
const WEIGHTS: &str = "model.bpk";

/// The training settings `config.json` recorded.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct TrainConfig {
    epochs: usize,
    batch_size: usize,
    learning_rate: f64,
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    seed: u64,
    threads: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig { epochs: 5, batch_size: 64, learning_rate: 0.001, beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7, seed: 42, threads: 0 }
    }
}

/// What `config.json` holds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointMeta {
    model: MlpConfig,
    train: TrainConfig,
    epochs_done: usize,
    /// SHA-256 of `model.bpk`, hex (absent in checkpoints written before it existed).
    #[serde(default)]
    weights_sha256: Option<String>,
}

fn err(path: &Path, reason: impl Into<String>) -> ModelError {
    ModelError::Checkpoint { path: path.into(), reason: reason.into() }
}

/// Whether `dir` holds a checkpoint of this older layout.
pub fn is_legacy(dir: &Path) -> bool {
    dir.join(CONFIG).is_file() && !dir.join(crate::sequential::checkpoint::META).is_file()
}

/// Loads a `config.json` checkpoint as the Sequential model it is.
pub(crate) fn load(dir: &Path, device: &Device) -> Result<(SeqMeta, SeqPredictor), ModelError> {
    let cfg_path = dir.join(CONFIG);
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| err(&cfg_path, e.to_string()))?;
    let meta: CheckpointMeta = serde_json::from_str(&text).map_err(|e| err(&cfg_path, e.to_string()))?;
    let w = dir.join(WEIGHTS);
    if !w.is_file() {
        return Err(err(&w, "weights file missing"));
    }
    let bytes = std::fs::read(&w).map_err(|e| err(&w, e.to_string()))?;
    let got = crate::sequential::checkpoint::sha256_hex(&bytes);
    if let Some(want) = &meta.weights_sha256 {
        if &got != want {
            return Err(err(&w, format!("corrupt: its SHA-256 is {got}, config.json records {want}")));
        }
    }
    let record = ModuleRecord::load(&w).map_err(|e| err(&w, e.to_string()))?;
    let mlp = meta.model.init(device).try_load_record(record).map_err(|e| err(&w, e.to_string()))?;
    let m = meta.model;
    let spec = SequentialSpec::dense(m.inputs, &[m.hidden], m.classes);
    let net = Net { dense: vec![mlp.fc1, mlp.fc2], dropout: Vec::new(), conv: Vec::new(), norm: Vec::new() };
    let t = meta.train;
    let settings = FitSettings {
        epochs: t.epochs,
        batch_size: t.batch_size,
        learning_rate: t.learning_rate,
        seed: t.seed,
        optimizer: Some(OptimizerSpec::Adam { learning_rate: t.learning_rate, beta_1: t.beta_1, beta_2: t.beta_2, epsilon: t.epsilon }),
        threads: t.threads,
    };
    let loss = Loss::SparseCategoricalCrossentropy;
    let seq = SeqMeta { model: spec.clone(), loss, settings, epochs_done: meta.epochs_done, features: FeatureSpec::mnist(), weights_sha256: got };
    Ok((seq, SeqPredictor { spec, loss, net }))
}
