//! The blog's network on burn: Dense(784→128, relu) → Dense(128→10) logits, Adam, sparse
//! categorical cross-entropy from logits, accuracy.
//!
//! * [`MlpConfig`] builds the [`Mlp`] (Glorot-uniform kernels, zero biases, as Keras' Dense).
//! * [`TrainConfig`] holds Keras' `compile`/`fit` settings (Adam 0.001, β1 0.9, β2 0.999,
//!   ε 1e-7, batch 64, 5 epochs, a shuffle seed).
//! * [`Trainer`] runs `fit`, `evaluate` and `predict` and reports progress through a callback,
//!   so the CLI can draw a Keras-like line without this crate printing anything.
//! * [`sequential`]: any Sequential model (Keras' `to_json()` or `--layers`) on feature
//!   vectors, with its losses, fit/evaluate/predict and checkpoints.
//! * [`onnx`]: ONNX graphs served through tract.
//! * [`checkpoint`] saves and loads a folder holding `config.json` and `model.bpk`.
//!
//! The device picks the backend (burn 0.22): [`default_device`] is burn's `flex` CPU backend;
//! this crate's `cuda` and `wgpu` features add burn's GPU backends, which [`device_from_env`]
//! selects from `TENSORCDC_DEVICE` (`cpu`, `cuda`, `cuda:N`, `wgpu`).

mod adam;
pub mod checkpoint;
pub mod metrics;
mod mlp;
pub mod onnx;
mod parallel;
pub mod sequential;
mod train;

pub use adam::FusedAdam;
pub use metrics::Metrics;
pub use mlp::{Mlp, MlpConfig};
pub use train::{argmax, EpochEnd, Predictor, Progress, TrainConfig, Trainer};

use burn::tensor::Device;

/// Errors of the model crate.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: std::path::PathBuf, reason: String },
    #[error("input: {0}")]
    Input(String),
}

/// The CPU device used unless a caller picks another: burn's `flex` backend.
pub fn default_device() -> Device {
    Device::flex()
}

/// Whether `device` is burn's `flex` CPU backend (autodiff or not).
pub fn is_cpu(device: &Device) -> bool {
    device.clone().inner() == Device::flex()
}

/// The device named by `TENSORCDC_DEVICE`: `cpu` (the default), `cuda` / `cuda:N` or `wgpu`,
/// the GPU ones when built with this crate's feature of the same name.
pub fn device_from_env() -> Result<Device, ModelError> {
    device_named(std::env::var("TENSORCDC_DEVICE").as_deref().unwrap_or("cpu"))
}

/// A device by name; see [`device_from_env`].
pub fn device_named(name: &str) -> Result<Device, ModelError> {
    let (kind, index) = name.split_once(':').unwrap_or((name, "0"));
    let index: usize = index.parse().map_err(|_| ModelError::Input(format!("device {name:?}: the index after ':' must be a number")))?;
    let unavailable = |feature: &str| {
        ModelError::Input(format!("device {name:?}: this binary was built without the `{feature}` feature (cargo build --release --features {feature})"))
    };
    match kind {
        "cpu" | "flex" => Ok(Device::flex()),
        #[cfg(feature = "cuda")]
        "cuda" => Ok(Device::cuda(index)),
        #[cfg(not(feature = "cuda"))]
        "cuda" => {
            let _ = index;
            Err(unavailable("cuda"))
        }
        #[cfg(feature = "wgpu")]
        "wgpu" => Ok(Device::wgpu(burn::tensor::DeviceKind::default())),
        #[cfg(not(feature = "wgpu"))]
        "wgpu" => Err(unavailable("wgpu")),
        other => Err(ModelError::Input(format!("device {other:?}: expected cpu, cuda, cuda:N or wgpu"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names() {
        assert!(is_cpu(&device_named("cpu").unwrap()));
        assert!(is_cpu(&default_device().autodiff()));
        let e = device_named("tpu").unwrap_err().to_string();
        assert!(e.contains("tpu") && e.contains("expected cpu"), "{e}");
        assert!(device_named("cuda:x").unwrap_err().to_string().contains("index"));
        #[cfg(not(feature = "cuda"))]
        assert!(device_named("cuda").unwrap_err().to_string().contains("--features cuda"));
    }
}
