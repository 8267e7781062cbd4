//! A checkpoint is a folder: `config.json` (layer sizes, training settings, epochs done,
//! and the SHA-256 of the weights) and `model.bpk` (the weights in burn's burnpack format).
//! Loading checks the checksum and that the weights give finite outputs, so a corrupt or
//! diverged checkpoint is a clear error rather than NaN predictions.

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
    /// SHA-256 of `model.bpk`, hex (absent in checkpoints written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_sha256: Option<String>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn err(path: &Path, reason: impl Into<String>) -> ModelError {
    ModelError::Checkpoint { path: path.into(), reason: reason.into() }
}

/// Saves the trainer's model into the folder `dir` (created if missing).
pub fn save(trainer: &Trainer, dir: &Path) -> Result<(), ModelError> {
    std::fs::create_dir_all(dir).map_err(|e| err(dir, e.to_string()))?;
    let w = dir.join(WEIGHTS);
    trainer.model().valid().into_record().save(&w).map_err(|e| err(&w, e.to_string()))?;
    let bytes = std::fs::read(&w).map_err(|e| err(&w, e.to_string()))?;
    let meta =
        CheckpointMeta { model: trainer.config, train: trainer.train.clone(), epochs_done: trainer.epochs_done, weights_sha256: Some(sha256_hex(&bytes)) };
    let json = serde_json::to_string_pretty(&meta).expect("config serialises");
    std::fs::write(dir.join(CONFIG), json).map_err(|e| err(&dir.join(CONFIG), e.to_string()))
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
    if let Some(want) = &meta.weights_sha256 {
        let got = sha256_hex(&std::fs::read(&w).map_err(|e| err(&w, e.to_string()))?);
        if &got != want {
            return Err(err(&w, format!("corrupt: its SHA-256 is {got}, config.json records {want}")));
        }
    }
    let record = ModuleRecord::load(&w).map_err(|e| err(&w, e.to_string()))?;
    let model = meta.model.init(device).try_load_record(record).map_err(|e| err(&w, e.to_string()))?;
    let predictor = Predictor { model, config: meta.model };
    // Non-finite weights give non-finite outputs: probe with a mid-grey input.
    let probe = predictor.predict(&[128u8; 784]).map_err(|e| err(&w, e.to_string()))?;
    if probe.iter().flatten().any(|p| !p.is_finite()) {
        return Err(err(&w, "the weights are not finite (NaN or infinity): the training diverged or the file is damaged"));
    }
    Ok((meta, predictor))
}
