//! The Sequential model on burn: Dense layers (Keras' initialisers, kernel `[in, out]`),
//! Dropout (active only while training, on an autodiff device) and activations.

use burn::module::{Initializer, Module};
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::activation::{elu, gelu, relu, selu, sigmoid, softmax, tanh};
use burn::tensor::{Device, Tensor};

use super::spec::{Activation, Init, Layer, SequentialSpec};

/// The weights: one `Linear` per Dense layer, one `Dropout` per Dropout layer, in order.
#[derive(Module, Debug)]
pub struct Net {
    pub dense: Vec<Linear>,
    pub dropout: Vec<Dropout>,
}

fn initializer(init: Init) -> Initializer {
    // Keras' He and LeCun limits are KaimingUniform/Normal's `gain * sqrt(3 / fan_in)`
    // (uniform) and `gain / sqrt(fan_in)` (normal) with gain √2 and 1. Keras draws its
    // normal variants from a truncated normal; burn's is not truncated.
    match init {
        Init::GlorotUniform => Initializer::XavierUniform { gain: 1.0 },
        Init::GlorotNormal => Initializer::XavierNormal { gain: 1.0 },
        Init::HeUniform => Initializer::KaimingUniform { gain: 2f64.sqrt(), fan_out_only: false },
        Init::HeNormal => Initializer::KaimingNormal { gain: 2f64.sqrt(), fan_out_only: false },
        Init::LecunUniform => Initializer::KaimingUniform { gain: 1.0, fan_out_only: false },
        Init::LecunNormal => Initializer::KaimingNormal { gain: 1.0, fan_out_only: false },
        Init::RandomUniform { minval, maxval } => Initializer::Uniform { min: minval, max: maxval },
        Init::RandomNormal { mean, stddev } => Initializer::Normal { mean, std: stddev },
        Init::Zeros => Initializer::Zeros,
        Init::Ones => Initializer::Ones,
        Init::Constant { value } => Initializer::Constant { value },
    }
}

pub(crate) fn activate(a: Activation, x: Tensor<2>) -> Tensor<2> {
    match a {
        Activation::Linear => x,
        Activation::Relu => relu(x),
        Activation::Sigmoid => sigmoid(x),
        Activation::Tanh => tanh(x),
        Activation::Softmax => softmax(x, 1),
        Activation::Gelu => gelu(x),
        Activation::Elu => elu(x, 1.0),
        Activation::Selu => selu(x),
    }
}

impl SequentialSpec {
    /// Builds the weights on `device` (draws the kernels now, in layer order).
    pub fn init(&self, device: &Device) -> Net {
        let mut d_in = self.inputs;
        let mut dense = Vec::new();
        let mut dropout = Vec::new();
        for l in &self.layers {
            match l {
                Layer::Dense { units, use_bias, kernel_initializer, bias_initializer, .. } => {
                    let weight = initializer(*kernel_initializer).init_with([d_in, *units], Some(d_in), Some(*units), device);
                    let _ = weight.val();
                    let bias = use_bias.then(|| initializer(*bias_initializer).init_with([*units], Some(d_in), Some(*units), device));
                    dense.push(Linear { weight, bias });
                    d_in = *units;
                }
                Layer::Dropout { rate } => dropout.push(DropoutConfig::new(*rate).init()),
                Layer::Activation { .. } => {}
            }
        }
        Net { dense, dropout }
    }
}

impl Net {
    /// `x`: `[batch, inputs]`. Returns the output before the final activation when that is
    /// a softmax or a sigmoid (losses take logits), else the output, and the activation left.
    pub fn forward_logits(&self, spec: &SequentialSpec, x: Tensor<2>) -> (Tensor<2>, Activation) {
        let last = spec.layers.iter().rposition(|l| !matches!(l, Layer::Dropout { .. }));
        let (mut di, mut pi) = (0, 0);
        let mut x = x;
        let mut held = Activation::Linear;
        for (i, l) in spec.layers.iter().enumerate() {
            let act = match l {
                Layer::Dense { activation, .. } => {
                    x = self.dense[di].forward(x);
                    di += 1;
                    *activation
                }
                Layer::Dropout { .. } => {
                    x = self.dropout[pi].forward(x);
                    pi += 1;
                    continue;
                }
                Layer::Activation { activation } => *activation,
            };
            if Some(i) == last && matches!(act, Activation::Softmax | Activation::Sigmoid) {
                held = act;
            } else {
                x = activate(act, x);
            }
        }
        (x, held)
    }

    /// The model's output (probabilities after a final softmax or sigmoid).
    pub fn forward(&self, spec: &SequentialSpec, x: Tensor<2>) -> Tensor<2> {
        let (z, held) = self.forward_logits(spec, x);
        activate(held, z)
    }
}
