//! Any Sequential model on feature vectors: the Keras model a user already has
//! (`model.to_json()`), or `--layers 64,64`.
//!
//! * [`spec`]: the model as Keras writes it ([`SequentialSpec`]).
//! * [`net`]: the weights on burn and the forward pass.
//! * [`data`]: the examples (feature vectors and targets) and a batch of them.
//! * [`fit`]: losses, `fit` / `evaluate` / `predict`.
//! * [`optim`]: Keras' optimizers (Adam, AdamW, SGD, RMSprop) and compile config.
//! * [`keras_json`], [`keras_file`]: Keras' own files in (`to_json()`, `.keras`,
//!   `.weights.h5`); [`keras_export`]: a `.keras` file out; [`onnx_export`]: an ONNX file out.
//! * [`checkpoint`]: a folder with `model.json` (model, loss, settings, the feature spec,
//!   the weights' SHA-256) and `model.bpk`, enough to predict from a raw row.

pub mod checkpoint;
pub mod data;
pub mod fit;
mod fused;
mod fused_head;
mod fused_state;
pub mod keras_export;
pub mod keras_file;
pub mod keras_json;
pub mod net;
pub mod onnx_export;
pub mod optim;
pub mod spec;

pub use data::{Data, Targets};
pub use fit::{FitEpoch, FitMetrics, FitProgress, FitSettings, Loss, SeqPredictor, SeqTrainer};
pub use optim::{CompileConfig, KerasOptimizer, OptimizerSpec};
pub use spec::{Activation, Init, Layer, Padding, SequentialSpec};
