//! The blog's network on burn: Dense(784→128, relu) → Dense(128→10) logits, Adam, sparse
//! categorical cross-entropy from logits, accuracy.
//!
//! * [`MlpConfig`] builds the [`Mlp`] (Glorot-uniform kernels, zero biases, as Keras' Dense).
//! * [`TrainConfig`] holds Keras' `compile`/`fit` settings (Adam 0.001, β1 0.9, β2 0.999,
//!   ε 1e-7, batch 64, 5 epochs, a shuffle seed).
//! * [`Trainer`] runs `fit`, `evaluate` and `predict` and reports progress through a callback,
//!   so the CLI can draw a Keras-like line without this crate printing anything.
//! * [`checkpoint`] saves and loads a folder holding `config.json` and `model.bpk`.
//!
//! The device picks the backend (burn 0.22): [`default_device`] is burn's `flex` CPU backend;
//! other backends are burn features (`wgpu`, `cuda`) enabled through this crate's features.

mod adam;
pub mod checkpoint;
pub mod metrics;
mod mlp;
mod parallel;
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
