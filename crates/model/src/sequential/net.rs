//! The Sequential model on burn: Dense layers (Keras' initialisers, kernel `[in, out]`),
//! Conv2D (burn's `[out, in, kh, kw]` kernel; Keras' `[kh, kw, in, out]` is permuted on
//! import and export), pooling, BatchNormalization, Dropout (active only while training, on
//! an autodiff device) and activations.
//!
//! Shapes: a batch enters as `[batch, inputs]`. An image model (an input shape of rank 3,
//! or a Reshape to one) holds `[batch, channels, height, width]`, burn's layout, between
//! its layers; Flatten takes it back to Keras' `channels_last` order (channel fastest), so a
//! Dense layer after it reads its inputs in the order Keras' kernel expects.

use burn::module::{Initializer, Module};
use burn::nn::conv::Conv2d;
use burn::nn::pool::{AvgPool2dConfig, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, PaddingConfig2d};
use burn::tensor::activation::{elu, gelu, relu, selu, sigmoid, softmax, tanh};
use burn::tensor::{Device, Tensor};

use super::spec::{Activation, Init, Layer, Padding, SequentialSpec};
use crate::ModelError;

/// The weights, one list per kind of layer, each in layer order.
#[derive(Module, Debug)]
pub struct Net {
    pub dense: Vec<Linear>,
    pub dropout: Vec<Dropout>,
    pub conv: Vec<Conv2d>,
    pub norm: Vec<BatchNorm>,
}

pub(crate) fn initializer(init: Init) -> Initializer {
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

pub(crate) fn activate<const D: usize>(a: Activation, x: Tensor<D>) -> Tensor<D> {
    match a {
        Activation::Linear => x,
        Activation::Relu => relu(x),
        Activation::Sigmoid => sigmoid(x),
        Activation::Tanh => tanh(x),
        Activation::Softmax => softmax(x, D - 1),
        Activation::Gelu => gelu(x),
        Activation::Elu => elu(x, 1.0),
        Activation::Selu => selu(x),
    }
}

fn padding(p: Padding) -> PaddingConfig2d {
    match p {
        Padding::Valid => PaddingConfig2d::Valid,
        Padding::Same => PaddingConfig2d::Same,
    }
}

impl SequentialSpec {
    /// The shape of one example entering each layer.
    pub(crate) fn input_shapes(&self) -> Result<Vec<Vec<usize>>, ModelError> {
        let outs = self.shapes()?;
        Ok(std::iter::once(self.first_shape()).chain(outs).take(self.layers.len()).collect())
    }

    /// Builds the weights on `device` (draws the kernels now, in layer order).
    pub fn init(&self, device: &Device) -> Result<Net, ModelError> {
        let mut net = Net { dense: Vec::new(), dropout: Vec::new(), conv: Vec::new(), norm: Vec::new() };
        for (l, shape) in self.layers.iter().zip(self.input_shapes()?) {
            match l {
                Layer::Dense { units, use_bias, kernel_initializer, bias_initializer, .. } => {
                    let d_in = shape[0];
                    let weight = initializer(*kernel_initializer).init_with([d_in, *units], Some(d_in), Some(*units), device);
                    let _ = weight.val();
                    let bias = use_bias.then(|| initializer(*bias_initializer).init_with([*units], Some(d_in), Some(*units), device));
                    net.dense.push(Linear { weight, bias });
                }
                Layer::Conv2D { filters, kernel_size: [kh, kw], strides, padding: p, use_bias, kernel_initializer, bias_initializer, .. } => {
                    let c_in = shape[2];
                    // Keras' fans of a convolution: receptive field times the channels in / out.
                    let (fan_in, fan_out) = (kh * kw * c_in, kh * kw * filters);
                    let weight = initializer(*kernel_initializer).init_with([*filters, c_in, *kh, *kw], Some(fan_in), Some(fan_out), device);
                    let _ = weight.val();
                    let bias = use_bias.then(|| initializer(*bias_initializer).init_with([*filters], Some(fan_in), Some(fan_out), device));
                    net.conv.push(Conv2d { weight, bias, stride: *strides, kernel_size: [*kh, *kw], dilation: [1, 1], groups: 1, padding: padding(*p) });
                }
                Layer::BatchNormalization { epsilon, momentum, .. } => {
                    let features = *shape.last().expect("a shape has an axis");
                    // burn's momentum weighs the batch, Keras' the running value.
                    net.norm.push(BatchNormConfig::new(features).with_epsilon(*epsilon).with_momentum(1.0 - momentum).init(device));
                }
                Layer::Dropout { rate } => net.dropout.push(DropoutConfig::new(*rate).init()),
                Layer::Activation { .. }
                | Layer::MaxPooling2D { .. }
                | Layer::AveragePooling2D { .. }
                | Layer::GlobalAveragePooling2D
                | Layer::Flatten
                | Layer::Reshape { .. } => {}
            }
        }
        Ok(net)
    }
}

/// A batch between layers: flat rows, or images `[batch, channels, height, width]`.
enum X {
    Flat(Tensor<2>),
    Image(Tensor<4>),
}

impl X {
    /// From `[batch, h * w * c]` in Keras' order (channel fastest) to burn's image layout.
    fn image(x: Tensor<2>, [h, w, c]: [usize; 3]) -> X {
        let n = x.dims()[0];
        X::Image(x.reshape([n, h, w, c]).permute([0, 3, 1, 2]))
    }

    /// Keras' Flatten: channel fastest.
    fn flat(self) -> Tensor<2> {
        match self {
            X::Flat(x) => x,
            X::Image(x) => {
                let [n, c, h, w] = x.dims();
                x.permute([0, 2, 3, 1]).reshape([n, h * w * c])
            }
        }
    }

    fn map(self, f2: impl FnOnce(Tensor<2>) -> Tensor<2>, f4: impl FnOnce(Tensor<4>) -> Tensor<4>) -> X {
        match self {
            X::Flat(x) => X::Flat(f2(x)),
            X::Image(x) => X::Image(f4(x)),
        }
    }

    fn image4(self) -> Tensor<4> {
        match self {
            X::Image(x) => x,
            X::Flat(_) => unreachable!("shapes() checked that this layer gets an image"),
        }
    }
}

impl Net {
    /// `x`: `[batch, inputs]`. Returns the output before the final activation when that is
    /// a softmax or a sigmoid (losses take logits), else the output, and the activation left.
    pub fn forward_logits(&self, spec: &SequentialSpec, x: Tensor<2>) -> (Tensor<2>, Activation) {
        let last = spec.last_active();
        let (mut di, mut pi, mut ci, mut ni) = (0, 0, 0, 0);
        let mut x = match spec.input_shape.as_deref() {
            Some(&[h, w, c]) => X::image(x, [h, w, c]),
            _ => X::Flat(x),
        };
        let mut held = Activation::Linear;
        for (i, l) in spec.layers.iter().enumerate() {
            let act = match l {
                Layer::Dense { activation, .. } => {
                    x = X::Flat(self.dense[di].forward(x.flat()));
                    di += 1;
                    *activation
                }
                Layer::Conv2D { activation, .. } => {
                    x = X::Image(self.conv[ci].forward(x.image4()));
                    ci += 1;
                    *activation
                }
                Layer::Dropout { .. } => {
                    let d = &self.dropout[pi];
                    x = x.map(|t| d.forward(t), |t| d.forward(t));
                    pi += 1;
                    continue;
                }
                Layer::BatchNormalization { .. } => {
                    let b = &self.norm[ni];
                    x = x.map(|t| b.forward(t), |t| b.forward(t));
                    ni += 1;
                    continue;
                }
                Layer::MaxPooling2D { pool_size, strides, padding: p } => {
                    x = X::Image(MaxPool2dConfig::new(*pool_size).with_strides(*strides).with_padding(padding(*p)).init().forward(x.image4()));
                    continue;
                }
                Layer::AveragePooling2D { pool_size, strides, padding: p } => {
                    // Keras' average leaves the padding out of the count.
                    let pool = AvgPool2dConfig::new(*pool_size).with_strides(*strides).with_padding(padding(*p)).with_count_include_pad(false).init();
                    x = X::Image(pool.forward(x.image4()));
                    continue;
                }
                Layer::GlobalAveragePooling2D => {
                    let t = x.image4();
                    let [n, c, h, w] = t.dims();
                    x = X::Flat(t.reshape([n, c, h * w]).mean_dim(2).reshape([n, c]));
                    continue;
                }
                Layer::Flatten => {
                    x = X::Flat(x.flat());
                    continue;
                }
                Layer::Reshape { target_shape } => {
                    let flat = x.flat();
                    x = match target_shape[..] {
                        [h, w, c] => X::image(flat, [h, w, c]),
                        _ => X::Flat(flat),
                    };
                    continue;
                }
                Layer::Activation { activation } => *activation,
            };
            if Some(i) == last && matches!(act, Activation::Softmax | Activation::Sigmoid) {
                held = act;
            } else {
                x = x.map(|t| activate(act, t), |t| activate_channels(act, t));
            }
        }
        (x.flat(), held)
    }

    /// The model's output (probabilities after a final softmax or sigmoid).
    pub fn forward(&self, spec: &SequentialSpec, x: Tensor<2>) -> Tensor<2> {
        let (z, held) = self.forward_logits(spec, x);
        activate(held, z)
    }
}

/// An activation on an image: element-wise ones as they are; a softmax over the channels
/// (Keras' last axis), which is axis 1 here.
fn activate_channels(a: Activation, x: Tensor<4>) -> Tensor<4> {
    match a {
        Activation::Softmax => softmax(x, 1),
        a => activate(a, x),
    }
}
