//! The network and its configuration.

use burn::module::{Initializer, Module, Param};
use burn::nn::Linear;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// Layer sizes. Defaults are the blog's: 784 inputs, 128 hidden units, 10 classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlpConfig {
    pub inputs: usize,
    pub hidden: usize,
    pub classes: usize,
}

impl Default for MlpConfig {
    fn default() -> Self {
        MlpConfig { inputs: 784, hidden: 128, classes: 10 }
    }
}

/// Dense(inputs→hidden, relu) → Dense(hidden→classes), logits out.
#[derive(Module, Debug)]
pub struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
}

/// A Keras `Dense` layer: Glorot-uniform kernel `[d_in, d_out]`, zero bias.
fn dense(d_in: usize, d_out: usize, device: &Device) -> Linear {
    let weight = Initializer::XavierUniform { gain: 1.0 }.init_with([d_in, d_out], Some(d_in), Some(d_out), device);
    let bias = Param::from_tensor(Tensor::zeros([d_out], device));
    Linear { weight, bias: Some(bias) }
}

impl MlpConfig {
    /// Builds the model on `device` (an autodiff device for training).
    pub fn init(&self, device: &Device) -> Mlp {
        Mlp { fc1: dense(self.inputs, self.hidden, device), fc2: dense(self.hidden, self.classes, device) }
    }
}

impl Mlp {
    /// `x`: `[batch, inputs]` pixels scaled to 0..1. Returns logits `[batch, classes]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let h = relu(self.fc1.forward(x));
        self.fc2.forward(h)
    }
}
