//! The JSON Keras writes for a Sequential model, read into a [`SequentialSpec`]: the text of
//! `model.to_json()`, the `config.json` inside a `.keras` file and the `model_config` of a
//! legacy `.h5` (Keras 3, and `tf.keras` 2's `batch_input_shape`). Keras'
//! `keras/src/models/sequential.py` `get_config` writes the `layers` list; each layer's config
//! follows that layer's `get_config`. A layer or an option tensorcdc does not build (another
//! `data_format`, dilation, groups) is an error naming the layer.

use serde_json::Value as J;

use super::spec::{Activation, Init, Layer, Padding, SequentialSpec};
use crate::ModelError;

/// The shape of one example from a Keras batch shape (`[null, 28, 28, 1]`).
fn example_shape(shape: &J) -> Option<Vec<usize>> {
    let dims = shape.as_array()?;
    dims.iter().skip(1).map(|d| d.as_u64().map(|d| d as usize)).collect()
}

/// A pair of a Keras config (`[3, 3]`, or `3` as a shorthand).
fn pair(v: &J) -> Option<[usize; 2]> {
    match v {
        J::Number(n) => n.as_u64().map(|n| [n as usize; 2]),
        J::Array(a) if a.len() == 2 => Some([a[0].as_u64()? as usize, a[1].as_u64()? as usize]),
        _ => None,
    }
}

impl SequentialSpec {
    /// Reads the JSON of Keras' `model.to_json()`. `inputs`: the feature width, used when
    /// the model has no input shape (and checked against it when it has one).
    pub fn from_keras_json(text: &str, inputs: usize) -> Result<SequentialSpec, ModelError> {
        let doc: J = serde_json::from_str(text).map_err(|e| ModelError::Input(format!("Keras model JSON: not JSON: {e}")))?;
        SequentialSpec::from_keras_value(&doc, Some(inputs))
    }

    /// Reads a Keras model config already parsed. `inputs`: as for
    /// [`from_keras_json`](Self::from_keras_json); `None` takes the width from the model's
    /// own input shape (a saved model always has one).
    pub fn from_keras_value(doc: &J, inputs: Option<usize>) -> Result<SequentialSpec, ModelError> {
        let bad = |m: String| ModelError::Input(format!("Keras model JSON: {m}"));
        let class = doc["class_name"].as_str().unwrap_or("");
        if class != "Sequential" {
            return Err(bad(format!("class_name {class:?}: only Sequential models are supported")));
        }
        let layers = doc["config"]["layers"].as_array().ok_or_else(|| bad("no config.layers".into()))?;
        let mut declared = doc["config"].get("build_input_shape").and_then(example_shape);
        let mut out = Vec::new();
        let mut positive_axes = Vec::new();
        for (i, l) in layers.iter().enumerate() {
            let name = l["class_name"].as_str().unwrap_or("");
            let cfg = &l["config"];
            let what = format!("layer {} ({name} {:?})", i + 1, cfg["name"].as_str().unwrap_or(""));
            if let Some(s) = cfg.get("batch_shape").or_else(|| cfg.get("batch_input_shape")).and_then(example_shape) {
                declared = Some(s);
            }
            let act = |k: &str| -> Result<Activation, ModelError> {
                match &cfg[k] {
                    J::String(s) => Activation::parse(s).map_err(|e| bad(format!("{what}: {e}"))),
                    J::Null => Ok(Activation::Linear),
                    J::Object(o) => Activation::parse(
                        o.get("config").and_then(|c| c.get("name")).and_then(J::as_str).or(o.get("class_name").and_then(J::as_str)).unwrap_or(""),
                    )
                    .map_err(|e| bad(format!("{what}: {e}"))),
                    _ => Err(bad(format!("{what}: activation must be a name"))),
                }
            };
            let init = |k: &str, default: &str| Init::from_keras(cfg.get(k).unwrap_or(&J::String(default.into())), &what).map_err(|e| bad(e.to_string()));
            let channels_last = || match cfg.get("data_format").and_then(J::as_str) {
                None | Some("channels_last") => Ok(()),
                Some(o) => Err(bad(format!("{what}: data_format {o:?} is not supported (channels_last)"))),
            };
            let padding = || match cfg.get("padding").and_then(J::as_str) {
                None | Some("valid") => Ok(Padding::Valid),
                Some("same") => Ok(Padding::Same),
                Some(o) => Err(bad(format!("{what}: padding {o:?} is not supported (valid, same)"))),
            };
            // Keras' default strides: 1 for a convolution, the pool size for pooling.
            let window = |k: &str| -> Result<([usize; 2], [usize; 2]), ModelError> {
                let size = pair(&cfg[k]).ok_or_else(|| bad(format!("{what}: no {k} (two positive integers)")))?;
                let strides = match &cfg["strides"] {
                    J::Null if k == "kernel_size" => [1, 1],
                    J::Null => size,
                    s => pair(s).ok_or_else(|| bad(format!("{what}: strides must be two positive integers")))?,
                };
                Ok((size, strides))
            };
            match name {
                "InputLayer" => {}
                "Flatten" => {
                    channels_last()?;
                    out.push(Layer::Flatten)
                }
                "Dense" => out.push(Layer::Dense {
                    units: match cfg["units"].as_u64() {
                        Some(0) => return Err(bad(format!("{what}: units is 0; a Dense layer needs at least one unit"))),
                        Some(u) => u as usize,
                        None => return Err(bad(format!("{what}: no units (a positive integer)"))),
                    },
                    activation: act("activation")?,
                    use_bias: cfg.get("use_bias").and_then(J::as_bool).unwrap_or(true),
                    kernel_initializer: init("kernel_initializer", "GlorotUniform")?,
                    bias_initializer: Init::from_keras(cfg.get("bias_initializer").unwrap_or(&J::Null), &what).map_err(|e| bad(e.to_string()))?,
                }),
                "Dropout" => out.push(Layer::Dropout { rate: cfg["rate"].as_f64().ok_or_else(|| bad(format!("{what}: no rate")))? }),
                "Activation" => out.push(Layer::Activation { activation: act("activation")? }),
                "Conv2D" => {
                    channels_last()?;
                    if cfg.get("dilation_rate").is_some_and(|d| pair(d) != Some([1, 1])) || cfg.get("groups").is_some_and(|g| g.as_u64() != Some(1)) {
                        return Err(bad(format!("{what}: dilation_rate other than (1, 1) and groups other than 1 are not supported")));
                    }
                    let (kernel_size, strides) = window("kernel_size")?;
                    out.push(Layer::Conv2D {
                        filters: cfg["filters"].as_u64().filter(|&f| f > 0).ok_or_else(|| bad(format!("{what}: filters must be a positive integer")))? as usize,
                        kernel_size,
                        strides,
                        padding: padding()?,
                        activation: act("activation")?,
                        use_bias: cfg.get("use_bias").and_then(J::as_bool).unwrap_or(true),
                        kernel_initializer: init("kernel_initializer", "GlorotUniform")?,
                        bias_initializer: Init::from_keras(cfg.get("bias_initializer").unwrap_or(&J::Null), &what).map_err(|e| bad(e.to_string()))?,
                    })
                }
                "MaxPooling2D" | "AveragePooling2D" => {
                    channels_last()?;
                    let (pool_size, strides) = window("pool_size")?;
                    let padding = padding()?;
                    out.push(if name == "MaxPooling2D" {
                        Layer::MaxPooling2D { pool_size, strides, padding }
                    } else {
                        Layer::AveragePooling2D { pool_size, strides, padding }
                    })
                }
                "GlobalAveragePooling2D" => {
                    channels_last()?;
                    if cfg.get("keepdims").and_then(J::as_bool) == Some(true) {
                        return Err(bad(format!("{what}: keepdims=True is not supported")));
                    }
                    out.push(Layer::GlobalAveragePooling2D)
                }
                "Reshape" => {
                    let target_shape = cfg["target_shape"]
                        .as_array()
                        .and_then(|a| a.iter().map(|d| d.as_u64().filter(|&d| d > 0).map(|d| d as usize)).collect::<Option<Vec<_>>>())
                        .ok_or_else(|| bad(format!("{what}: target_shape must be positive integers (-1 is not supported)")))?;
                    out.push(Layer::Reshape { target_shape })
                }
                "BatchNormalization" => {
                    let last_axis = match &cfg["axis"] {
                        J::Null => true,
                        J::Number(n) => n.as_i64() == Some(-1),
                        J::Array(a) => a.len() == 1 && a[0].as_i64() == Some(-1),
                        _ => false,
                    };
                    // A positive axis is the last one when it equals the rank (with the batch axis) of
                    // the layer's input, checked once the shapes are known.
                    let axis = cfg["axis"].as_i64().or_else(|| cfg["axis"].as_array().filter(|a| a.len() == 1).and_then(|a| a[0].as_i64()));
                    match axis {
                        _ if last_axis => {}
                        Some(a) if a > 0 => positive_axes.push((out.len(), a as usize, what.clone())),
                        _ => return Err(bad(format!("{what}: only the last axis (channels) is supported"))),
                    }
                    if cfg.get("renorm").and_then(J::as_bool) == Some(true) {
                        return Err(bad(format!("{what}: renorm is not supported")));
                    }
                    if cfg.get("center").and_then(J::as_bool) == Some(false) || cfg.get("scale").and_then(J::as_bool) == Some(false) {
                        return Err(bad(format!("{what}: center=False and scale=False are not supported (tensorcdc keeps gamma and beta)")));
                    }
                    out.push(Layer::BatchNormalization {
                        epsilon: cfg["epsilon"].as_f64().unwrap_or(1e-3),
                        momentum: cfg["momentum"].as_f64().unwrap_or(0.99),
                        center: cfg["center"].as_bool().unwrap_or(true),
                        scale: cfg["scale"].as_bool().unwrap_or(true),
                    })
                }
                other => {
                    return Err(bad(format!(
                        "{what}: layer {other:?} is not supported (InputLayer, Flatten, Dense, Dropout, Activation, Conv2D, MaxPooling2D, \
                         AveragePooling2D, GlobalAveragePooling2D, Reshape, BatchNormalization)"
                    )));
                }
            }
        }
        let width = match (&declared, inputs) {
            (Some(s), Some(w)) if s.iter().product::<usize>() != w => {
                return Err(bad(format!("the model takes {} inputs but the feature spec makes {w} features", s.iter().product::<usize>())));
            }
            (Some(s), _) => s.iter().product(),
            (None, Some(w)) => w,
            (None, None) => return Err(bad("the model has no input shape (build it, or give it an Input layer, before saving)".into())),
        };
        if !out.iter().any(|l| matches!(l, Layer::Dense { .. })) {
            return Err(bad("no Dense layer".into()));
        }
        let input_shape = declared.filter(|s| s.len() > 1);
        let spec = SequentialSpec { inputs: width, input_shape, layers: out };
        let shapes = spec.shapes().map_err(|e| bad(e.to_string().trim_start_matches("input: ").to_string()))?;
        for (at, axis, what) in positive_axes {
            let rank = if at == 0 { spec.first_shape().len() } else { shapes[at - 1].len() };
            if axis != rank {
                return Err(bad(format!("{what}: axis {axis} is not the last axis of its input (rank {rank}); only the channels axis is supported")));
            }
        }
        Ok(spec)
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

    /// Keras 3.15's `config.json` of `Sequential([Input((28, 28, 1)), Conv2D(4, 3, activation="relu"),
    /// MaxPooling2D(), BatchNormalization(), Flatten(), Dense(10)])` (trimmed of dtype policies,
    /// regularisers and constraints).
    const CNN: &str = r#"{"module": "keras", "class_name": "Sequential", "config": {"name": "sequential", "trainable": true, "layers": [
      {"module": "keras.layers", "class_name": "InputLayer", "config": {"batch_shape": [null, 28, 28, 1], "dtype": "float32", "sparse": false, "ragged": false, "name": "input_layer", "optional": false}, "registered_name": null},
      {"module": "keras.layers", "class_name": "Conv2D", "config": {"name": "conv2d", "trainable": true, "filters": 4, "kernel_size": [3, 3], "strides": [1, 1], "padding": "valid", "data_format": "channels_last", "dilation_rate": [1, 1], "groups": 1, "activation": "relu", "use_bias": true,
        "kernel_initializer": {"module": "keras.initializers", "class_name": "GlorotUniform", "config": {"seed": null, "input_axes": null, "output_axes": null}, "registered_name": null},
        "bias_initializer": {"module": "keras.initializers", "class_name": "Zeros", "config": {}, "registered_name": null}}, "registered_name": null, "build_config": {"input_shape": [null, 28, 28, 1]}},
      {"module": "keras.layers", "class_name": "MaxPooling2D", "config": {"name": "max_pooling2d", "trainable": true, "pool_size": [2, 2], "padding": "valid", "strides": [2, 2], "data_format": "channels_last"}, "registered_name": null},
      {"module": "keras.layers", "class_name": "BatchNormalization", "config": {"name": "batch_normalization", "trainable": true, "axis": -1, "momentum": 0.99, "epsilon": 0.001, "center": true, "scale": true, "synchronized": false, "renorm": false}, "registered_name": null, "build_config": {"input_shape": [null, 13, 13, 4]}},
      {"module": "keras.layers", "class_name": "Flatten", "config": {"name": "flatten", "trainable": true, "data_format": "channels_last"}, "registered_name": null, "build_config": {"input_shape": [null, 13, 13, 4]}},
      {"module": "keras.layers", "class_name": "Dense", "config": {"name": "dense", "trainable": true, "units": 10, "activation": "linear", "use_bias": true, "kernel_initializer": {"module": "keras.initializers", "class_name": "GlorotUniform", "config": {"seed": null}}, "bias_initializer": {"class_name": "Zeros", "config": {}}}, "registered_name": null, "build_config": {"input_shape": [null, 676]}}],
      "build_input_shape": [null, 28, 28, 1]}, "registered_name": null, "build_config": {"input_shape": [null, 28, 28, 1]}}"#;

    #[test]
    fn reads_what_keras_writes() {
        let s = SequentialSpec::from_keras_json(KERAS3, 30).unwrap();
        assert_eq!(s.layers.len(), 3);
        assert_eq!(s.outputs(), 1);
        assert_eq!(s.final_activation(), Activation::Sigmoid);
        assert!(matches!(s.layers[2], Layer::Dense { kernel_initializer: Init::HeNormal, .. }));
        let e = SequentialSpec::from_keras_json(KERAS3, 31).unwrap_err().to_string();
        assert!(e.contains("takes 30 inputs") && e.contains("31 features"), "{e}");
        let conv = KERAS3.replacen("\"Dropout\"", "\"Conv3D\"", 1);
        let e = SequentialSpec::from_keras_json(&conv, 30).unwrap_err().to_string();
        assert!(e.contains("layer 3 (Conv3D \"dropout\")") && e.contains("not supported"), "{e}");
        let e = SequentialSpec::from_keras_json(&KERAS3.replacen("\"relu\"", "\"swish\"", 1), 30).unwrap_err().to_string();
        assert!(e.contains("\"swish\""), "{e}");
        let e = SequentialSpec::from_keras_json(&KERAS3.replacen("\"units\": 16", "\"units\": 0", 1), 30).unwrap_err().to_string();
        assert!(e.contains("layer 2 (Dense \"dense\")") && e.contains("units is 0"), "{e}");
    }

    #[test]
    fn reads_a_convolutional_network() {
        let s = SequentialSpec::from_keras_json(CNN, 784).unwrap();
        assert_eq!(s.input_shape, Some(vec![28, 28, 1]));
        let names: Vec<&str> = s.layers.iter().map(Layer::class_name).collect();
        assert_eq!(names, ["Conv2D", "MaxPooling2D", "BatchNormalization", "Flatten", "Dense"]);
        assert_eq!(
            s.layers[0],
            Layer::Conv2D {
                filters: 4,
                kernel_size: [3, 3],
                strides: [1, 1],
                padding: Padding::Valid,
                activation: Activation::Relu,
                use_bias: true,
                kernel_initializer: Init::GlorotUniform,
                bias_initializer: Init::Zeros
            }
        );
        assert_eq!(s.layers[2], Layer::BatchNormalization { epsilon: 0.001, momentum: 0.99, center: true, scale: true });
        // Keras' build_config of the Dense layer: 676 = 13 * 13 * 4 inputs.
        assert_eq!(s.shapes().unwrap()[3], vec![676]);
        let e = SequentialSpec::from_keras_json(&CNN.replace("\"channels_last\"", "\"channels_first\""), 784).unwrap_err().to_string();
        assert!(e.contains("layer 2 (Conv2D \"conv2d\")") && e.contains("channels_first"), "{e}");
        let e = SequentialSpec::from_keras_json(&CNN.replace("\"dilation_rate\": [1, 1]", "\"dilation_rate\": [2, 2]"), 784).unwrap_err().to_string();
        assert!(e.contains("dilation_rate"), "{e}");
        // Without the Flatten, Dense meets an image: Keras would apply it to the last axis; we refuse.
        let mut no_flatten: J = serde_json::from_str(CNN).unwrap();
        no_flatten["config"]["layers"].as_array_mut().unwrap().remove(4);
        let e = SequentialSpec::from_keras_value(&no_flatten, None).unwrap_err().to_string();
        assert!(e.contains("Flatten"), "{e}");
    }
}
