//! The blog's network as the checkpoints of `config.json` (`checkpoint.rs`) hold it:
//! `fc1`, `fc2`. Only read, to load those checkpoints as a Sequential model.

use burn::module::{Initializer, Module, Param};
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};
use serde::Deserialize;

/// Layer sizes. Defaults are the blog's: 784 inputs, 128 hidden units, 10 classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MlpConfig {
    pub inputs: usize,
    pub hidden: usize,
    pub classes: usize,
}

/// Dense(inputs→hidden, relu) → Dense(hidden→classes), logits out.
#[derive(Module, Debug)]
pub(crate) struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
}

fn dense(d_in: usize, d_out: usize, device: &Device) -> Linear {
    let weight = Initializer::Zeros.init_with([d_in, d_out], Some(d_in), Some(d_out), device);
    let bias = Param::from_tensor(Tensor::zeros([d_out], device));
    Linear { weight, bias: Some(bias) }
}

impl MlpConfig {
    /// The shapes to load a record into.
    pub(crate) fn init(&self, device: &Device) -> Mlp {
        Mlp { fc1: dense(self.inputs, self.hidden, device), fc2: dense(self.hidden, self.classes, device) }
    }
}
