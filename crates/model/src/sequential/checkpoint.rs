//! A general checkpoint: `model.json` (the Sequential spec, loss, fit settings, epochs done,
//! the fitted feature spec, the SHA-256 of the weights), `model.bpk` (burn's burnpack) and
//! `optimizer.bpk` (the optimizer's state, for resuming training). Loading checks the checksum
//! and probes the model for non-finite outputs.

use std::path::Path;

use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use tensorcdc_dataset::features::FeatureSpec;

use super::{FitSettings, Loss, SeqPredictor, SeqTrainer, SequentialSpec};
use crate::ModelError;

pub const META: &str = "model.json";
const WEIGHTS: &str = "model.bpk";
const OPTIMIZER: &str = "optimizer.bpk";

/// What `model.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeqMeta {
    pub model: SequentialSpec,
    pub loss: Loss,
    pub settings: FitSettings,
    pub epochs_done: usize,
    pub features: FeatureSpec,
    pub weights_sha256: String,
}

fn err(path: &Path, reason: impl Into<String>) -> ModelError {
    ModelError::Checkpoint { path: path.into(), reason: reason.into() }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// True when `dir` holds a general checkpoint.
pub fn is_sequential(dir: &Path) -> bool {
    dir.join(META).is_file()
}

/// Saves the trainer's model and the feature spec into `dir`.
pub fn save(t: &SeqTrainer, features: &FeatureSpec, dir: &Path) -> Result<(), ModelError> {
    std::fs::create_dir_all(dir).map_err(|e| err(dir, e.to_string()))?;
    let w = dir.join(WEIGHTS);
    t.net().clone().valid().into_record().save(&w).map_err(|e| err(&w, e.to_string()))?;
    let bytes = std::fs::read(&w).map_err(|e| err(&w, e.to_string()))?;
    let o = dir.join(OPTIMIZER);
    t.save_optimizer(&o).map_err(|e| err(&o, e))?;
    let meta = SeqMeta { model: t.spec.clone(), loss: t.loss, settings: t.settings.clone(), epochs_done: t.epochs_done, features: features.clone(), weights_sha256: sha256_hex(&bytes) };
    let path = dir.join(META);
    std::fs::write(&path, serde_json::to_string_pretty(&meta).expect("meta serialises")).map_err(|e| err(&path, e.to_string()))
}

/// Loads a general checkpoint for inference.
pub fn load(dir: &Path, device: &Device) -> Result<(SeqMeta, SeqPredictor), ModelError> {
    let path = dir.join(META);
    let text = std::fs::read_to_string(&path).map_err(|e| err(&path, e.to_string()))?;
    let meta: SeqMeta = serde_json::from_str(&text).map_err(|e| err(&path, e.to_string()))?;
    let w = dir.join(WEIGHTS);
    let bytes = std::fs::read(&w).map_err(|e| err(&w, e.to_string()))?;
    let got = sha256_hex(&bytes);
    if got != meta.weights_sha256 {
        return Err(err(&w, format!("corrupt: its SHA-256 is {got}, {META} records {}", meta.weights_sha256)));
    }
    let record = ModuleRecord::load(&w).map_err(|e| err(&w, e.to_string()))?;
    let net = meta.model.init(device).try_load_record(record).map_err(|e| err(&w, e.to_string()))?;
    let p = SeqPredictor { spec: meta.model.clone(), loss: meta.loss, net };
    let probe = p.predict(&vec![0.0; meta.model.inputs], meta.model.inputs)?;
    if probe.iter().flatten().any(|x| !x.is_finite()) {
        return Err(err(&w, "the weights are not finite (NaN or infinity): the training diverged or the file is damaged"));
    }
    Ok((meta, p))
}

/// Loads a general checkpoint to train on from where it stopped (`tensorcdc run` after a
/// restart): the weights, settings and optimizer state (Adam's step count and moments) it was
/// saved with. A checkpoint without `optimizer.bpk` (saved before it was written), or with
/// one that does not load, resumes with the optimizer started afresh, and says so.
pub fn resume(dir: &Path, device: &Device) -> Result<(SeqMeta, SeqTrainer), ModelError> {
    let (meta, _) = load(dir, device)?;
    let mut t = SeqTrainer::new(meta.model.clone(), meta.loss, meta.settings.clone(), device)?;
    let w = dir.join(WEIGHTS);
    let record = ModuleRecord::load(&w).map_err(|e| err(&w, e.to_string()))?;
    t.load_record(record).map_err(|e| err(&w, e))?;
    t.epochs_done = meta.epochs_done;
    let o = dir.join(OPTIMIZER);
    match o.is_file().then(|| t.load_optimizer(&o)) {
        Some(Ok(())) => {}
        Some(Err(e)) => eprintln!("{}: {e}; the optimizer's state starts afresh", o.display()),
        None => eprintln!("{}: not there; the optimizer's state starts afresh", o.display()),
    }
    Ok((meta, t))
}
