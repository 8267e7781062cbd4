//! Models on burn: one Sequential model for every table, the blog's MNIST included
//! (`Dense(128, relu) → Dense(10)` on the MNIST feature preset), one trainer that picks its
//! execution strategy, one predictor, one checkpoint format.
//!
//! * [`sequential`]: any Sequential model (Keras' `to_json()` or `--layers`) on feature
//!   vectors, with its losses, fit/evaluate/predict and checkpoints; `SeqTrainer` trains a
//!   first `Dense(relu)` layer in column blocks over the CPU cores (`parallel.rs`) when it can.
//! * [`onnx`]: ONNX graphs served through tract.
//! * [`checkpoint`]: the blog's checkpoints of the older `config.json` layout, still loaded.
//!
//! The device picks the backend (burn 0.22): [`default_device`] is burn's `flex` CPU backend;
//! this crate's `cuda` and `wgpu` features add burn's GPU backends, which [`device_from_env`]
//! selects from `TENSORCDC_DEVICE` (`cpu`, `cuda`, `cuda:N`, `wgpu`).

mod adam;
pub mod checkpoint;
mod dense;
mod matmul;
mod mlp;
pub mod onnx;
mod parallel;
pub mod sequential;

pub use adam::FusedAdam;

/// The index and value of the largest probability.
pub fn argmax(probs: &[f32]) -> (usize, f32) {
    probs.iter().copied().enumerate().fold((0, f32::MIN), |best, (i, p)| if p > best.1 { (i, p) } else { best })
}

use burn::tensor::Device;

/// Errors of the model crate.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: std::path::PathBuf, reason: String },
    #[error("input: {0}")]
    Input(String),
    /// A Keras config (an optimizer's, an initializer's) this crate cannot take, and why.
    #[error("{0}")]
    KerasConfig(String),
    /// A name (a loss, an activation) this crate does not implement.
    #[error("{what} {name:?} is not supported ({supported})")]
    Unsupported { what: &'static str, name: String, supported: &'static str },
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
