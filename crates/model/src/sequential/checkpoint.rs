//! A general checkpoint: `model.json` (the Sequential spec, loss, fit settings, epochs done,
//! the fitted feature spec, the SHA-256 of the weights), `model.bpk` (burn's burnpack) and
//! the optimizer's state, for resuming training: `optimizer.bpk` (burn's record, one thread)
//! or `optimizer-fused.bin` (the fused strategy's blocks and head, `fused_state.rs`). Loading
//! checks the checksum and probes the model for non-finite outputs.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use tensorcdc_dataset::features::FeatureSpec;

use super::fit::OptimizerState;
use super::{FitSettings, Loss, SeqPredictor, SeqTrainer, SequentialSpec};
use crate::ModelError;

pub const META: &str = "model.json";
const WEIGHTS: &str = "model.bpk";
const OPTIMIZER: &str = "optimizer.bpk";
/// The fused strategy's blocks' and head's Adam state (`fused_state.rs`).
const FUSED_OPTIMIZER: &str = "optimizer-fused.bin";

/// The file a trainer's optimizer state is kept in, if any.
fn optimizer_file(t: &SeqTrainer) -> Option<&'static str> {
    match t.optimizer_state() {
        OptimizerState::Burn => Some(OPTIMIZER),
        OptimizerState::Fused => Some(FUSED_OPTIMIZER),
        OptimizerState::NotKept => None,
    }
}

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

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// True when `dir` holds a general checkpoint, or is a Keras file (`.keras`, `.weights.h5`)
/// or an ONNX file (served only: [`load_served`]).
pub fn is_sequential(dir: &Path) -> bool {
    dir.join(META).is_file() || super::keras_file::is_keras_file(dir) || crate::onnx::is_onnx_file(dir)
}

/// True when `dir` is a checkpoint of the blog's images (the MNIST feature preset): one that
/// `train` wrote from images, or one of the older `config.json` layout. The CLI gives these
/// the blog's image commands (`--pixels`, digits out); the model is the same Sequential one.
pub fn is_image_model(dir: &Path) -> bool {
    if crate::checkpoint::is_legacy(dir) {
        return true;
    }
    let Ok(text) = std::fs::read_to_string(dir.join(META)) else { return false };
    serde_json::from_str::<SeqMeta>(&text).is_ok_and(|m| m.features == FeatureSpec::mnist())
}

/// A model for serving: tensorcdc's own or a Keras file's on burn, or an ONNX graph on tract.
pub enum Served {
    Seq(SeqPredictor),
    Onnx(crate::onnx::OnnxPredictor),
}

impl Served {
    /// One output row per example (see [`SeqPredictor::predict`], [`crate::onnx::OnnxPredictor::predict`]).
    pub fn predict(&self, x: &[f32], width: usize) -> Result<Vec<Vec<f32>>, ModelError> {
        match self {
            Served::Seq(p) => p.predict(x, width),
            Served::Onnx(p) => p.predict(x, width),
        }
    }

    /// Keras' metrics over `data`.
    pub fn evaluate(&self, data: &super::Data, batch_size: usize) -> Result<super::FitMetrics, ModelError> {
        match self {
            Served::Seq(p) => Ok(p.evaluate(data, batch_size)),
            Served::Onnx(p) => p.evaluate(data, batch_size),
        }
    }
}

/// Any model `predict` and `evaluate` take: a checkpoint folder, a Keras file or an ONNX
/// file; its feature spec and loss beside it (an ONNX model's: classification when it has
/// more than one output, or one output and a spec of two classes; else regression).
pub fn load_served(path: &Path, device: &Device) -> Result<(FeatureSpec, Loss, Served), ModelError> {
    if crate::onnx::is_onnx_file(path) {
        let side = sidecar_features(path)?;
        let mut p = crate::onnx::OnnxPredictor::load(path, side.as_ref())?;
        let features = match side {
            Some(f) => f,
            None => keras_features(path, p.width(), p.outputs)?,
        };
        // One output with a spec of two classes: a sigmoid's probability of the second.
        p.binary = p.outputs == 1 && features.task == tensorcdc_dataset::features::Task::Classification && features.classes.len() == 2;
        let loss = if p.outputs > 1 || p.binary { Loss::SparseCategoricalCrossentropy } else { Loss::MeanSquaredError };
        return Ok((features, loss, Served::Onnx(p)));
    }
    let (meta, p) = load(path, device)?;
    Ok((meta.features, meta.loss, Served::Seq(p)))
}

/// Saves the trainer's model and the feature spec into `dir`.
pub fn save(t: &SeqTrainer, features: &FeatureSpec, dir: &Path) -> Result<(), ModelError> {
    std::fs::create_dir_all(dir).map_err(|e| err(dir, e.to_string()))?;
    let w = dir.join(WEIGHTS);
    t.net().valid().into_record().save(&w).map_err(|e| err(&w, e.to_string()))?;
    let bytes = std::fs::read(&w).map_err(|e| err(&w, e.to_string()))?;
    let kept = optimizer_file(t);
    if let Some(name) = kept {
        let o = dir.join(name);
        t.save_optimizer(&o).map_err(|e| err(&o, e))?;
    }
    // A stale state from an earlier save into this folder would not match these weights: it
    // goes, or the save fails (a resume would read it as these weights' state).
    for stale in [OPTIMIZER, FUSED_OPTIMIZER].into_iter().filter(|n| Some(*n) != kept) {
        let o = dir.join(stale);
        match std::fs::remove_file(&o) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err(&o, format!("a stale optimizer state stays: {e}"))),
            _ => {}
        }
    }
    let meta = SeqMeta {
        model: t.spec.clone(),
        loss: t.loss,
        settings: t.settings.clone(),
        epochs_done: t.epochs_done,
        features: features.clone(),
        weights_sha256: sha256_hex(&bytes),
    };
    let path = dir.join(META);
    std::fs::write(&path, serde_json::to_string_pretty(&meta).expect("meta serialises")).map_err(|e| err(&path, e.to_string()))
}

/// Loads a checkpoint for inference: `model.json`, a Keras file (see [`load_keras`]), or the
/// blog's older `config.json` layout ([`crate::checkpoint`]).
pub fn load(dir: &Path, device: &Device) -> Result<(SeqMeta, SeqPredictor), ModelError> {
    if !dir.exists() {
        return Err(err(dir, "no such checkpoint (train one with `tensorcdc train --out DIR`)"));
    }
    if crate::checkpoint::is_legacy(dir) {
        let (meta, p) = crate::checkpoint::load(dir, device)?;
        probe(&p, &dir.join(WEIGHTS))?;
        return Ok((meta, p));
    }
    if super::keras_file::is_keras_file(dir) {
        return load_keras(dir, device);
    }
    if crate::onnx::is_onnx_file(dir) {
        return Err(err(dir, "an ONNX model is served as it is (evaluate, predict); it cannot be trained further or exported"));
    }
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
    let net = meta.model.init(device)?.try_load_record(record).map_err(|e| err(&w, e.to_string()))?;
    let p = SeqPredictor { spec: meta.model.clone(), loss: meta.loss, net };
    probe(&p, &w)?;
    Ok((meta, p))
}

fn probe(p: &SeqPredictor, w: &Path) -> Result<(), ModelError> {
    let probe = p.predict(&vec![0.0; p.spec.inputs], p.spec.inputs)?;
    if probe.iter().flatten().any(|x| !x.is_finite()) {
        return Err(err(w, "the weights are not finite (NaN or infinity): the training diverged or the file is damaged"));
    }
    Ok(())
}

/// The feature spec of a Keras or ONNX file: `<file>.features.json` beside it (a tensorcdc feature
/// spec, the `features` of a checkpoint's `model.json`), else the blog's MNIST preset for a
/// model of 784 inputs and 10 outputs (the 784 bytes of `pixels` / 255, the label `label`).
pub fn keras_features(path: &Path, inputs: usize, outputs: usize) -> Result<FeatureSpec, ModelError> {
    let side = PathBuf::from(format!("{}.features.json", path.display()));
    if let Some(f) = sidecar_features(path)? {
        if f.width() != inputs {
            return Err(err(&side, format!("the spec makes {} features, the model takes {inputs}", f.width())));
        }
        return Ok(f);
    }
    if inputs == tensorcdc_dataset::PIXELS && outputs == 10 {
        return Ok(FeatureSpec::mnist());
    }
    Err(err(
        path,
        format!(
            "a model of {} inputs and {} outputs needs its feature spec in {} (the `features` of a tensorcdc model.json); \
             only a 784-input, 10-class image model takes the MNIST preset",
            inputs,
            outputs,
            side.display()
        ),
    ))
}

/// The feature spec in `<file>.features.json`, when there is one.
fn sidecar_features(path: &Path) -> Result<Option<FeatureSpec>, ModelError> {
    let side = PathBuf::from(format!("{}.features.json", path.display()));
    if !side.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&side).map_err(|e| err(&side, e.to_string()))?;
    serde_json::from_str(&text).map(Some).map_err(|e| err(&side, format!("not a feature spec: {e}")))
}

/// A Keras file for serving: the architecture and weights Keras saved, the loss of its
/// compile config (else the one its last layer implies), the feature spec of
/// [`keras_features`]. `weights_sha256` is the file's own.
pub fn load_keras(path: &Path, device: &Device) -> Result<(SeqMeta, SeqPredictor), ModelError> {
    let k = super::keras_file::load(path, device)?;
    let features = keras_features(path, k.spec.inputs, k.spec.outputs())?;
    let loss = match k.compile.as_ref().and_then(|c| c.loss) {
        Some(l) => l,
        None if k.spec.outputs() > 1 => Loss::SparseCategoricalCrossentropy,
        None if k.spec.final_activation() == super::Activation::Sigmoid => Loss::BinaryCrossentropy,
        None => Loss::MeanSquaredError,
    };
    let mut settings = FitSettings::default();
    if let Some(c) = &k.compile {
        settings.optimizer = Some(c.optimizer);
    }
    let bytes = std::fs::read(path).map_err(|e| err(path, e.to_string()))?;
    let meta = SeqMeta { model: k.spec.clone(), loss, settings, epochs_done: 0, features, weights_sha256: sha256_hex(&bytes) };
    let p = SeqPredictor { spec: k.spec, loss, net: k.net };
    probe(&p, path)?;
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
    let Some(name) = optimizer_file(&t) else {
        eprintln!("{}: the fused strategy with this model's head keeps no optimizer state; it starts afresh", dir.display());
        return Ok((meta, t));
    };
    let o = dir.join(name);
    match o.is_file().then(|| t.load_optimizer(&o)) {
        Some(Ok(())) => {}
        Some(Err(e)) => eprintln!("{}: {e}; the optimizer's state starts afresh", o.display()),
        None => eprintln!("{}: not there; the optimizer's state starts afresh", o.display()),
    }
    Ok((meta, t))
}
