//! A Sequential model as Keras writes it: the JSON of `model.to_json()` (Keras 3, and
//! `tf.keras` 2's `batch_input_shape`), reduced to what tensorcdc builds: InputLayer,
//! Flatten (of its input), Dense (units, activation, use_bias, initialisers), Dropout and
//! Activation. Any other layer is an error naming it (Keras' `keras/src/models/sequential.py`
//! `get_config` writes the `layers` list read here; the layer configs follow each layer's
//! `get_config`).

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
    pub fn parse(name: &str) -> Result<Activation, String> {
        Ok(match name {
            "linear" | "None" => Activation::Linear,
            "relu" => Activation::Relu,
            "sigmoid" => Activation::Sigmoid,
            "tanh" => Activation::Tanh,
            "softmax" => Activation::Softmax,
            "gelu" => Activation::Gelu,
            "elu" => Activation::Elu,
            "selu" => Activation::Selu,
            o => return Err(format!("activation {o:?} is not supported (relu, sigmoid, tanh, softmax, linear, gelu, elu, selu)")),
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
    fn from_keras(v: &J, what: &str) -> Result<Init, String> {
        let (name, cfg) = match v {
            J::String(s) => (s.as_str(), &J::Null),
            J::Object(o) => (o.get("class_name").and_then(J::as_str).unwrap_or(""), o.get("config").unwrap_or(&J::Null)),
            J::Null => return Ok(Init::Zeros),
            _ => return Err(format!("{what}: expected an initializer")),
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
            o => return Err(format!("{what}: initializer {o:?} is not supported")),
        })
    }
}

/// One layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "layer", rename_all = "lowercase")]
pub enum Layer {
    Dense { units: usize, activation: Activation, use_bias: bool, kernel_initializer: Init, bias_initializer: Init },
    Dropout { rate: f64 },
    Activation { activation: Activation },
}

/// A Sequential model: its input width and layers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequentialSpec {
    pub inputs: usize,
    pub layers: Vec<Layer>,
}

fn shape_width(shape: &J) -> Option<usize> {
    let dims = shape.as_array()?;
    dims.iter().skip(1).map(|d| d.as_u64().map(|d| d as usize)).product()
}

impl SequentialSpec {
    /// `--layers 64,64`: Dense(relu) per entry, then the output layer (linear: losses take
    /// logits).
    pub fn dense(inputs: usize, hidden: &[usize], outputs: usize) -> SequentialSpec {
        let dense = |units, activation| Layer::Dense { units, activation, use_bias: true, kernel_initializer: Init::GlorotUniform, bias_initializer: Init::Zeros };
        let mut layers: Vec<Layer> = hidden.iter().map(|&u| dense(u, Activation::Relu)).collect();
        layers.push(dense(outputs, Activation::Linear));
        SequentialSpec { inputs, layers }
    }

    /// Reads the JSON of Keras' `model.to_json()`. `inputs`: the feature width, used when
    /// the model has no input shape (and checked against it when it has one).
    pub fn from_keras_json(text: &str, inputs: usize) -> Result<SequentialSpec, ModelError> {
        let bad = |m: String| ModelError::Input(format!("Keras model JSON: {m}"));
        let doc: J = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let class = doc["class_name"].as_str().unwrap_or("");
        if class != "Sequential" {
            return Err(bad(format!("class_name {class:?}: only Sequential models are supported")));
        }
        let layers = doc["config"]["layers"].as_array().ok_or_else(|| bad("no config.layers".into()))?;
        let mut declared = doc["config"].get("build_input_shape").and_then(shape_width);
        let mut out = Vec::new();
        for (i, l) in layers.iter().enumerate() {
            let name = l["class_name"].as_str().unwrap_or("");
            let cfg = &l["config"];
            let what = format!("layer {} ({name} {:?})", i + 1, cfg["name"].as_str().unwrap_or(""));
            if let Some(w) = cfg.get("batch_shape").or_else(|| cfg.get("batch_input_shape")).and_then(shape_width) {
                declared = Some(w);
            }
            let act = |k: &str| -> Result<Activation, ModelError> {
                match &cfg[k] {
                    J::String(s) => Activation::parse(s).map_err(|e| bad(format!("{what}: {e}"))),
                    J::Null => Ok(Activation::Linear),
                    J::Object(o) => Activation::parse(o.get("config").and_then(|c| c.get("name")).and_then(J::as_str).or(o.get("class_name").and_then(J::as_str)).unwrap_or(""))
                        .map_err(|e| bad(format!("{what}: {e}"))),
                    _ => Err(bad(format!("{what}: activation must be a name"))),
                }
            };
            match name {
                "InputLayer" | "Flatten" => {}
                "Dense" => out.push(Layer::Dense {
                    units: match cfg["units"].as_u64() {
                        Some(0) => return Err(bad(format!("{what}: units is 0; a Dense layer needs at least one unit"))),
                        Some(u) => u as usize,
                        None => return Err(bad(format!("{what}: no units (a positive integer)"))),
                    },
                    activation: act("activation")?,
                    use_bias: cfg.get("use_bias").and_then(J::as_bool).unwrap_or(true),
                    kernel_initializer: Init::from_keras(cfg.get("kernel_initializer").unwrap_or(&J::String("GlorotUniform".into())), &what).map_err(bad)?,
                    bias_initializer: Init::from_keras(cfg.get("bias_initializer").unwrap_or(&J::Null), &what).map_err(bad)?,
                }),
                "Dropout" => out.push(Layer::Dropout { rate: cfg["rate"].as_f64().ok_or_else(|| bad(format!("{what}: no rate")))? }),
                "Activation" => out.push(Layer::Activation { activation: act("activation")? }),
                other => {
                    return Err(bad(format!("{what}: layer {other:?} is not supported (InputLayer, Flatten, Dense, Dropout, Activation)")));
                }
            }
        }
        if let Some(w) = declared {
            if w != inputs {
                return Err(bad(format!("the model takes {w} inputs but the feature spec makes {inputs} features")));
            }
        }
        if !out.iter().any(|l| matches!(l, Layer::Dense { .. })) {
            return Err(bad("no Dense layer".into()));
        }
        Ok(SequentialSpec { inputs, layers: out })
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

    /// The activation applied last (a softmax or sigmoid there is folded into the loss).
    pub fn final_activation(&self) -> Activation {
        match self.layers.iter().rev().find(|l| !matches!(l, Layer::Dropout { .. })) {
            Some(Layer::Dense { activation, .. }) | Some(Layer::Activation { activation }) => *activation,
            _ => Activation::Linear,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Keras 3.15 writes for
    /// `Sequential([Input((30,)), Dense(16, "relu"), Dropout(0.2), Dense(1, "sigmoid")]).to_json()`
    /// (trimmed of dtype policies).
    const KERAS3: &str = r#"{"module": "keras", "class_name": "Sequential", "config": {"name": "sequential", "trainable": true,
      "layers": [{"module": "keras.layers", "class_name": "InputLayer", "config": {"batch_shape": [null, 30], "dtype": "float32", "sparse": false, "name": "input_layer"}, "registered_name": null},
      {"module": "keras.layers", "class_name": "Dense", "config": {"name": "dense", "trainable": true, "units": 16, "activation": "relu", "use_bias": true,
        "kernel_initializer": {"module": "keras.initializers", "class_name": "GlorotUniform", "config": {"seed": null}, "registered_name": null},
        "bias_initializer": {"module": "keras.initializers", "class_name": "Zeros", "config": {}, "registered_name": null}, "kernel_regularizer": null}, "build_config": {"input_shape": [null, 30]}},
      {"module": "keras.layers", "class_name": "Dropout", "config": {"name": "dropout", "trainable": true, "rate": 0.2, "seed": null, "noise_shape": null}},
      {"module": "keras.layers", "class_name": "Dense", "config": {"name": "dense_1", "units": 1, "activation": "sigmoid", "use_bias": true,
        "kernel_initializer": {"module": "keras.initializers", "class_name": "HeNormal", "config": {"seed": null}}, "bias_initializer": {"class_name": "Zeros", "config": {}}}}],
      "build_input_shape": [null, 30]}, "registered_name": null}"#;

    #[test]
    fn reads_what_keras_writes() {
        let s = SequentialSpec::from_keras_json(KERAS3, 30).unwrap();
        assert_eq!(s.layers.len(), 3);
        assert_eq!(s.outputs(), 1);
        assert_eq!(s.final_activation(), Activation::Sigmoid);
        assert!(matches!(s.layers[2], Layer::Dense { kernel_initializer: Init::HeNormal, .. }));
        let e = SequentialSpec::from_keras_json(KERAS3, 31).unwrap_err().to_string();
        assert!(e.contains("takes 30 inputs") && e.contains("31 features"), "{e}");
        let conv = KERAS3.replacen("\"Dropout\"", "\"Conv2D\"", 1);
        let e = SequentialSpec::from_keras_json(&conv, 30).unwrap_err().to_string();
        assert!(e.contains("layer 3 (Conv2D \"dropout\")") && e.contains("not supported"), "{e}");
        let e = SequentialSpec::from_keras_json(&KERAS3.replacen("\"relu\"", "\"swish\"", 1), 30).unwrap_err().to_string();
        assert!(e.contains("\"swish\""), "{e}");
        let e = SequentialSpec::from_keras_json(&KERAS3.replacen("\"units\": 16", "\"units\": 0", 1), 30).unwrap_err().to_string();
        assert!(e.contains("layer 2 (Dense \"dense\")") && e.contains("units is 0"), "{e}");
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
