//! A checkpoint is a folder: `config.json` (layer sizes, training settings, epochs done)
//! and `model.bpk` (the weights in burn's burnpack format).

use std::path::Path;

use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::train::Predictor;
use crate::{MlpConfig, ModelError, TrainConfig, Trainer};

const CONFIG: &str = "config.json";
const WEIGHTS: &str = "model.bpk";

/// What `config.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointMeta {
    pub model: MlpConfig,
    pub train: TrainConfig,
    pub epochs_done: usize,
}

fn err(path: &Path, reason: impl Into<String>) -> ModelError {
    ModelError::Checkpoint { path: path.into(), reason: reason.into() }
}

/// Saves the trainer's model into the folder `dir` (created if missing).
pub fn save(trainer: &Trainer, dir: &Path) -> Result<(), ModelError> {
    std::fs::create_dir_all(dir).map_err(|e| err(dir, e.to_string()))?;
    let meta = CheckpointMeta { model: trainer.config, train: trainer.train.clone(), epochs_done: trainer.epochs_done };
    let json = serde_json::to_string_pretty(&meta).expect("config serialises");
    std::fs::write(dir.join(CONFIG), json).map_err(|e| err(&dir.join(CONFIG), e.to_string()))?;
    trainer.model().valid().into_record().save(dir.join(WEIGHTS)).map_err(|e| err(&dir.join(WEIGHTS), e.to_string()))
}

/// Loads a checkpoint folder for inference.
pub fn load(dir: &Path, device: &Device) -> Result<(CheckpointMeta, Predictor), ModelError> {
    let cfg_path = dir.join(CONFIG);
    if !dir.is_dir() {
        return Err(err(dir, "no such checkpoint folder (train one with `tensorcdc train --out DIR`)"));
    }
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| err(&cfg_path, e.to_string()))?;
    let meta: CheckpointMeta = serde_json::from_str(&text).map_err(|e| err(&cfg_path, e.to_string()))?;
    let w = dir.join(WEIGHTS);
    if !w.is_file() {
        return Err(err(&w, "weights file missing"));
    }
    let record = ModuleRecord::load(&w).map_err(|e| err(&w, e.to_string()))?;
    let model = meta.model.init(device).try_load_record(record).map_err(|e| err(&w, e.to_string()))?;
    let predictor = Predictor { model, config: meta.model };
    Ok((meta, predictor))
}

/// Loads a checkpoint to continue training.
pub fn load_trainer(dir: &Path, device: &Device) -> Result<Trainer, ModelError> {
    let (meta, p) = load(dir, device)?;
    let device = device.clone().autodiff();
    let model = p.model.fork(&device);
    let mut t = Trainer::from_model(meta.model, meta.train, model, device);
    t.epochs_done = meta.epochs_done;
    Ok(t)
}
