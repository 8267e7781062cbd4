//! A Sequential model: its input shape and layers as Keras names them (Dense, Dropout,
//! Activation, Conv2D, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, Flatten,
//! Reshape, BatchNormalization), and the shape of each layer's output, checked as Keras
//! checks it when it builds the model. Images are `channels_last` (height, width, channels),
//! as Keras' default; the JSON Keras writes is read in [`super::keras_json`].

use serde::{Deserialize, Serialize};
use serde_json::Value as J;

use crate::ModelError;

/// Keras' activations that tensorcdc implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Linear,
    Relu,
    Sigmoid,
    Tanh,
    Softmax,
    Gelu,
    Elu,
    Selu,
}

impl Activation {
    pub fn parse(name: &str) -> Result<Activation, ModelError> {
        Ok(match name {
            "linear" | "None" => Activation::Linear,
            "relu" => Activation::Relu,
            "sigmoid" => Activation::Sigmoid,
            "tanh" => Activation::Tanh,
            "softmax" => Activation::Softmax,
            "gelu" => Activation::Gelu,
            "elu" => Activation::Elu,
            "selu" => Activation::Selu,
            o => {
                return Err(ModelError::Unsupported { what: "activation", name: o.into(), supported: "relu, sigmoid, tanh, softmax, linear, gelu, elu, selu" })
            }
        })
    }
}

/// Keras' initialisers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "class_name")]
pub enum Init {
    GlorotUniform,
    GlorotNormal,
    HeUniform,
    HeNormal,
    LecunUniform,
    LecunNormal,
    RandomUniform { minval: f64, maxval: f64 },
    RandomNormal { mean: f64, stddev: f64 },
    Zeros,
    Ones,
    Constant { value: f64 },
}

impl Init {
    pub(crate) fn from_keras(v: &J, what: &str) -> Result<Init, ModelError> {
        let (name, cfg) = match v {
            J::String(s) => (s.as_str(), &J::Null),
            J::Object(o) => (o.get("class_name").and_then(J::as_str).unwrap_or(""), o.get("config").unwrap_or(&J::Null)),
            J::Null => return Ok(Init::Zeros),
            _ => return Err(ModelError::KerasConfig(format!("{what}: expected an initializer"))),
        };
        let num = |k: &str, d: f64| cfg.get(k).and_then(J::as_f64).unwrap_or(d);
        Ok(match name {
            "GlorotUniform" | "glorot_uniform" => Init::GlorotUniform,
            "GlorotNormal" | "glorot_normal" => Init::GlorotNormal,
            "HeUniform" | "he_uniform" => Init::HeUniform,
            "HeNormal" | "he_normal" => Init::HeNormal,
            "LecunUniform" | "lecun_uniform" => Init::LecunUniform,
            "LecunNormal" | "lecun_normal" => Init::LecunNormal,
            "RandomUniform" | "random_uniform" => Init::RandomUniform { minval: num("minval", -0.05), maxval: num("maxval", 0.05) },
            "RandomNormal" | "random_normal" => Init::RandomNormal { mean: num("mean", 0.0), stddev: num("stddev", 0.05) },
            "Zeros" | "zeros" => Init::Zeros,
            "Ones" | "ones" => Init::Ones,
            "Constant" | "constant" => Init::Constant { value: num("value", 0.0) },
            o => return Err(ModelError::KerasConfig(format!("{what}: initializer {o:?} is not supported"))),
        })
    }
}

/// Keras' `padding` of convolutions and pooling: `valid` (none) or `same` (the output is
/// `ceil(input / stride)` long, the extra padding after, as TensorFlow pads).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Padding {
    Valid,
    Same,
}

impl Padding {
    /// The output length along one axis.
    pub fn out_len(self, len: usize, kernel: usize, stride: usize) -> Option<usize> {
        match self {
            Padding::Valid => len.checked_sub(kernel).map(|d| d / stride + 1),
            Padding::Same => Some(len.div_ceil(stride)),
        }
    }
}

/// One layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "layer", rename_all = "lowercase")]
pub enum Layer {
    Dense {
        units: usize,
        activation: Activation,
        use_bias: bool,
        kernel_initializer: Init,
        bias_initializer: Init,
    },
    Dropout {
        rate: f64,
    },
    Activation {
        activation: Activation,
    },
    /// A 2-D convolution over `(height, width, channels)`, kernel `[kh, kw, in, filters]` as Keras keeps it.
    Conv2D {
        filters: usize,
        kernel_size: [usize; 2],
        strides: [usize; 2],
        padding: Padding,
        activation: Activation,
        use_bias: bool,
        kernel_initializer: Init,
        bias_initializer: Init,
    },
    MaxPooling2D {
        pool_size: [usize; 2],
        strides: [usize; 2],
        padding: Padding,
    },
    AveragePooling2D {
        pool_size: [usize; 2],
        strides: [usize; 2],
        padding: Padding,
    },
    GlobalAveragePooling2D,
    /// Flattens in Keras' order (channels_last: channel fastest).
    Flatten,
    Reshape {
        target_shape: Vec<usize>,
    },
    /// Over the last axis (channels), Keras' momentum (`running = m * running + (1 - m) * batch`).
    BatchNormalization {
        epsilon: f64,
        momentum: f64,
        center: bool,
        scale: bool,
    },
}

impl Layer {
    /// Keras' class name.
    pub fn class_name(&self) -> &'static str {
        match self {
            Layer::Dense { .. } => "Dense",
            Layer::Dropout { .. } => "Dropout",
            Layer::Activation { .. } => "Activation",
            Layer::Conv2D { .. } => "Conv2D",
            Layer::MaxPooling2D { .. } => "MaxPooling2D",
            Layer::AveragePooling2D { .. } => "AveragePooling2D",
            Layer::GlobalAveragePooling2D => "GlobalAveragePooling2D",
            Layer::Flatten => "Flatten",
            Layer::Reshape { .. } => "Reshape",
            Layer::BatchNormalization { .. } => "BatchNormalization",
        }
    }

    /// The activation this layer ends with, if it has one.
    pub fn activation(&self) -> Option<Activation> {
        match self {
            Layer::Dense { activation, .. } | Layer::Conv2D { activation, .. } | Layer::Activation { activation } => Some(*activation),
            _ => None,
        }
    }
}

/// A Sequential model: its input width, the shape of one example when it is not a flat
/// vector (`[28, 28, 1]`: the 784 features are that image, row-major, channel last), and
/// its layers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequentialSpec {
    pub inputs: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_shape: Option<Vec<usize>>,
    pub layers: Vec<Layer>,
}

fn show(shape: &[usize]) -> String {
    format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "))
}

impl SequentialSpec {
    /// `--layers 64,64`: Dense(relu) per entry, then the output layer (linear: losses take
    /// logits).
    pub fn dense(inputs: usize, hidden: &[usize], outputs: usize) -> SequentialSpec {
        let dense =
            |units, activation| Layer::Dense { units, activation, use_bias: true, kernel_initializer: Init::GlorotUniform, bias_initializer: Init::Zeros };
        let mut layers: Vec<Layer> = hidden.iter().map(|&u| dense(u, Activation::Relu)).collect();
        layers.push(dense(outputs, Activation::Linear));
        SequentialSpec { inputs, input_shape: None, layers }
    }

    /// The blog's network: `Dense(128, relu) → Dense(10)` logits on the 784 pixels of the MNIST
    /// feature preset (`FeatureSpec::mnist()`).
    pub fn mnist() -> SequentialSpec {
        SequentialSpec::dense(tensorcdc_dataset::PIXELS, &[128], 10)
    }

    /// The shape of one example as the first layer sees it.
    pub fn first_shape(&self) -> Vec<usize> {
        self.input_shape.clone().unwrap_or_else(|| vec![self.inputs])
    }

    /// The shape of each layer's output (one example), checked as Keras builds the model:
    /// a convolution or pooling needs `(height, width, channels)`, Dense a flat input, a
    /// Reshape the same number of values. The error names the layer.
    pub fn shapes(&self) -> Result<Vec<Vec<usize>>, ModelError> {
        let first = self.first_shape();
        if first.iter().product::<usize>() != self.inputs {
            return Err(ModelError::Input(format!(
                "the input shape {} holds {} values, the model takes {}",
                show(&first),
                first.iter().product::<usize>(),
                self.inputs
            )));
        }
        let mut shape = first;
        let mut out = Vec::with_capacity(self.layers.len());
        for (i, l) in self.layers.iter().enumerate() {
            let bad = |m: String| ModelError::Input(format!("layer {} ({}): {m}", i + 1, l.class_name()));
            let image = |shape: &[usize]| -> Result<[usize; 3], ModelError> {
                match *shape {
                    [h, w, c] => Ok([h, w, c]),
                    _ => Err(bad(format!(
                        "expects an image (height, width, channels), got {}; give the input a shape such as (28, 28, 1) or add a Reshape",
                        show(shape)
                    ))),
                }
            };
            let window = |[h, w, c]: [usize; 3], k: [usize; 2], s: [usize; 2], p: Padding, ch: usize| -> Result<Vec<usize>, ModelError> {
                if k.contains(&0) || s.contains(&0) {
                    return Err(bad("kernel, pool size and strides must be positive".into()));
                }
                match (p.out_len(h, k[0], s[0]), p.out_len(w, k[1], s[1])) {
                    (Some(a), Some(b)) if a > 0 && b > 0 => Ok(vec![a, b, if ch == 0 { c } else { ch }]),
                    _ => Err(bad(format!("a {}x{} window does not fit the input {} with padding \"valid\"", k[0], k[1], show(&[h, w, c])))),
                }
            };
            shape = match l {
                Layer::Dense { units, .. } => match shape[..] {
                    [_] => vec![*units],
                    _ => return Err(bad(format!("expects a flat input, got {}; add a Flatten before it", show(&shape)))),
                },
                Layer::Dropout { rate } => {
                    if !(0.0..1.0).contains(rate) {
                        return Err(bad(format!("rate {rate} is not in [0, 1)")));
                    }
                    shape
                }
                Layer::Activation { activation: Activation::Softmax } if shape.len() == 2 => {
                    return Err(bad(format!("a softmax over the last axis of {} is not supported; add a Flatten before it", show(&shape))));
                }
                Layer::Activation { .. } => shape,
                Layer::BatchNormalization { epsilon, momentum, .. } => {
                    if *epsilon <= 0.0 || !epsilon.is_finite() || !(0.0..=1.0).contains(momentum) {
                        return Err(bad(format!("epsilon {epsilon} must be positive and momentum {momentum} in [0, 1]")));
                    }
                    if shape.len() == 2 {
                        return Err(bad(format!(
                            "normalising the last axis of {} is not supported (a flat input or an image is); add a Flatten before it",
                            show(&shape)
                        )));
                    }
                    shape
                }
                Layer::Conv2D { filters, kernel_size, strides, padding, .. } => {
                    if *filters == 0 {
                        return Err(bad("filters is 0".into()));
                    }
                    window(image(&shape)?, *kernel_size, *strides, *padding, *filters)?
                }
                Layer::MaxPooling2D { pool_size, strides, padding } | Layer::AveragePooling2D { pool_size, strides, padding } => {
                    window(image(&shape)?, *pool_size, *strides, *padding, 0)?
                }
                Layer::GlobalAveragePooling2D => vec![image(&shape)?[2]],
                Layer::Flatten => vec![shape.iter().product()],
                Layer::Reshape { target_shape } => {
                    let (a, b) = (shape.iter().product::<usize>(), target_shape.iter().product::<usize>());
                    if a != b {
                        return Err(bad(format!("cannot reshape {} ({a} values) to {} ({b} values)", show(&shape), show(target_shape))));
                    }
                    target_shape.clone()
                }
            };
            out.push(shape.clone());
        }
        match shape[..] {
            [_] => Ok(out),
            _ => Err(ModelError::Input(format!("the model's output has the shape {}; end it with Flatten or GlobalAveragePooling2D and Dense", show(&shape)))),
        }
    }

    /// `--layers`: every hidden layer needs at least one unit.
    pub fn check_hidden(hidden: &[usize]) -> Result<(), ModelError> {
        match hidden.iter().position(|&u| u == 0) {
            Some(i) => Err(ModelError::Input(format!("--layers: hidden layer {} has 0 units; each needs at least one", i + 1))),
            None => Ok(()),
        }
    }

    /// Units of the last Dense layer.
    pub fn outputs(&self) -> usize {
        self.layers.iter().rev().find_map(|l| if let Layer::Dense { units, .. } = l { Some(*units) } else { None }).unwrap_or(0)
    }

    /// The index of the layer whose activation is applied last (a softmax or sigmoid there
    /// is folded into the loss): the last layer but Dropout.
    pub(crate) fn last_active(&self) -> Option<usize> {
        self.layers.iter().rposition(|l| !matches!(l, Layer::Dropout { .. }))
    }

    /// The activation applied last.
    pub fn final_activation(&self) -> Activation {
        self.last_active().and_then(|i| self.layers[i].activation()).unwrap_or(Activation::Linear)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(filters: usize, k: usize, padding: Padding) -> Layer {
        Layer::Conv2D {
            filters,
            kernel_size: [k, k],
            strides: [1, 1],
            padding,
            activation: Activation::Relu,
            use_bias: true,
            kernel_initializer: Init::GlorotUniform,
            bias_initializer: Init::Zeros,
        }
    }

    #[test]
    fn shapes_as_keras_builds_them() {
        let pool = Layer::MaxPooling2D { pool_size: [2, 2], strides: [2, 2], padding: Padding::Valid };
        let dense = SequentialSpec::dense(1, &[], 10).layers.remove(0);
        // Keras: Input(28,28,1) Conv2D(32,3) MaxPool Conv2D(64,3) MaxPool Flatten Dense(10):
        // 26x26x32, 13x13x32, 11x11x64, 5x5x64, 1600, 10 (model.summary()).
        let s = SequentialSpec {
            inputs: 784,
            input_shape: Some(vec![28, 28, 1]),
            layers: vec![conv(32, 3, Padding::Valid), pool.clone(), conv(64, 3, Padding::Valid), pool.clone(), Layer::Flatten, dense.clone()],
        };
        assert_eq!(s.shapes().unwrap(), vec![vec![26, 26, 32], vec![13, 13, 32], vec![11, 11, 64], vec![5, 5, 64], vec![1600], vec![10]]);
        // "same" keeps ceil(len / stride): 28 -> 28, strides 2 on 7 -> 4.
        assert_eq!(Padding::Same.out_len(7, 3, 2), Some(4));
        assert_eq!(Padding::Valid.out_len(7, 3, 2), Some(3));
        let flat = SequentialSpec { inputs: 784, input_shape: None, layers: vec![conv(4, 3, Padding::Same), Layer::Flatten, dense.clone()] };
        let e = flat.shapes().unwrap_err().to_string();
        assert!(e.contains("layer 1 (Conv2D)") && e.contains("(784)") && e.contains("Reshape"), "{e}");
        let unflat = SequentialSpec { inputs: 784, input_shape: Some(vec![28, 28, 1]), layers: vec![conv(4, 3, Padding::Same), dense] };
        let e = unflat.shapes().unwrap_err().to_string();
        assert!(e.contains("layer 2 (Dense)") && e.contains("(28, 28, 4)") && e.contains("Flatten"), "{e}");
        let big = SequentialSpec { inputs: 4, input_shape: Some(vec![2, 2, 1]), layers: vec![conv(1, 3, Padding::Valid), Layer::Flatten] };
        assert!(big.shapes().unwrap_err().to_string().contains("does not fit"));
        // Values a model file may hold that burn would panic on, or a layout held flat.
        let norm = |epsilon, momentum| Layer::BatchNormalization { epsilon, momentum, center: true, scale: true };
        let two_d = SequentialSpec { inputs: 784, input_shape: Some(vec![28, 28]), layers: vec![norm(1e-3, 0.99), Layer::Flatten] };
        assert!(two_d.shapes().unwrap_err().to_string().contains("layer 1 (BatchNormalization): normalising the last axis of (28, 28)"));
        let flat = |l: Layer| SequentialSpec { inputs: 4, input_shape: None, layers: vec![l] };
        assert!(flat(norm(0.0, 0.99)).shapes().unwrap_err().to_string().contains("epsilon 0"));
        assert!(flat(norm(1e-3, 1.5)).shapes().unwrap_err().to_string().contains("momentum 1.5"));
        assert!(flat(Layer::Dropout { rate: 1.0 }).shapes().unwrap_err().to_string().contains("rate 1 is not in [0, 1)"));
        assert_eq!(flat(norm(1e-3, 0.99)).shapes().unwrap(), vec![vec![4]]);
    }

    #[test]
    fn zero_hidden_units_are_refused() {
        assert!(SequentialSpec::check_hidden(&[64, 64]).is_ok());
        let e = SequentialSpec::check_hidden(&[64, 0]).unwrap_err().to_string();
        assert!(e.contains("hidden layer 2 has 0 units"), "{e}");
    }

    #[test]
    fn layers_flag_and_round_trip() {
        let s = SequentialSpec::dense(8, &[64, 64], 3);
        assert_eq!((s.layers.len(), s.outputs(), s.final_activation()), (3, 3, Activation::Linear));
        let back: SequentialSpec = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }
}
