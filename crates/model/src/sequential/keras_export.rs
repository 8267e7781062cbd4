//! tensorcdc's model out to Keras: a `.keras` file, as Keras 3's `model.save` writes it (a
//! zip of `config.json`, `metadata.json` and `model.weights.h5`), which
//! `keras.models.load_model` reads. The config is a Sequential of Keras' own layer configs
//! (an InputLayer of the model's input shape first; initialisers and other options left at
//! Keras' defaults); the weights go where [`super::keras_file`] reads them from
//! (`layers/<name>/vars/<i>`, a convolution's kernel permuted back to `[kh, kw, in, out]`).
//! A model that ends in logits is exported so: Keras' `predict` gives the logits, and
//! their softmax (sigmoid for one unit) is tensorcdc's probabilities.

use std::io::Write;
use std::path::Path;

use burn::tensor::Tensor;
use hdf5_metno as hdf5;
use serde_json::{json, Value as J};

use super::fit::Loss;
use super::keras_file::saved_names;
use super::net::Net;
use super::spec::{Layer, Padding, SequentialSpec};
use crate::ModelError;

fn err(path: &Path, reason: impl Into<String>) -> ModelError {
    ModelError::Checkpoint { path: path.into(), reason: reason.into() }
}

fn layer(class: &str, config: J) -> J {
    json!({"module": "keras.layers", "class_name": class, "config": config, "registered_name": null})
}

fn padding(p: Padding) -> &'static str {
    match p {
        Padding::Valid => "valid",
        Padding::Same => "same",
    }
}

/// The `config.json` of the model: Keras 3's serialisation of a Sequential.
pub fn keras_config(spec: &SequentialSpec, loss: Loss) -> J {
    let batch_shape: Vec<J> = std::iter::once(J::Null).chain(spec.first_shape().into_iter().map(J::from)).collect();
    let mut layers = vec![layer("InputLayer", json!({"batch_shape": batch_shape, "dtype": "float32", "sparse": false, "name": "input_layer"}))];
    for (l, name) in spec.layers.iter().zip(saved_names(spec)) {
        let act = |a: super::Activation| serde_json::to_value(a).expect("activation serialises");
        let mut c = match l {
            Layer::Dense { units, activation, use_bias, .. } => json!({"units": units, "activation": act(*activation), "use_bias": use_bias}),
            Layer::Dropout { rate } => json!({"rate": rate}),
            Layer::Activation { activation } => json!({"activation": act(*activation)}),
            Layer::Conv2D { filters, kernel_size, strides, padding: p, activation, use_bias, .. } => json!({
                "filters": filters, "kernel_size": kernel_size, "strides": strides, "padding": padding(*p),
                "data_format": "channels_last", "dilation_rate": [1, 1], "groups": 1, "activation": act(*activation), "use_bias": use_bias
            }),
            Layer::MaxPooling2D { pool_size, strides, padding: p } | Layer::AveragePooling2D { pool_size, strides, padding: p } => {
                json!({"pool_size": pool_size, "strides": strides, "padding": padding(*p), "data_format": "channels_last"})
            }
            Layer::GlobalAveragePooling2D => json!({"data_format": "channels_last", "keepdims": false}),
            Layer::Flatten => json!({"data_format": "channels_last"}),
            Layer::Reshape { target_shape } => json!({"target_shape": target_shape}),
            Layer::BatchNormalization { epsilon, momentum, center, scale } => {
                json!({"axis": -1, "momentum": momentum, "epsilon": epsilon, "center": center, "scale": scale})
            }
        };
        c["name"] = J::from(name);
        c["trainable"] = J::Bool(true);
        c["dtype"] = J::from("float32");
        layers.push(layer(l.class_name(), c));
    }
    let (loss_name, logits) = match loss {
        Loss::SparseCategoricalCrossentropy => ("SparseCategoricalCrossentropy", true),
        Loss::BinaryCrossentropy => ("BinaryCrossentropy", true),
        Loss::MeanSquaredError => ("MeanSquaredError", false),
        Loss::MeanAbsoluteError => ("MeanAbsoluteError", false),
        Loss::Huber { .. } => ("Huber", false),
    };
    // tensorcdc folds a final softmax or sigmoid into its loss; from_logits says which Keras needs.
    let from_logits = logits && !matches!(spec.final_activation(), super::Activation::Softmax | super::Activation::Sigmoid);
    json!({
        "module": "keras", "class_name": "Sequential",
        "config": {"name": "sequential", "trainable": true, "dtype": "float32", "layers": layers},
        "registered_name": null,
        "build_config": {"input_shape": batch_shape},
        "compile_config": {
            "optimizer": "adam",
            "loss": {"module": "keras.losses", "class_name": loss_name, "config": {"from_logits": from_logits}, "registered_name": null},
            "metrics": if logits { json!(["accuracy"]) } else { json!(["mae"]) },
            "loss_weights": null, "weighted_metrics": null, "run_eagerly": false, "steps_per_execution": 1, "jit_compile": false
        }
    })
}

fn values<const D: usize>(t: Tensor<D>) -> (Vec<usize>, Vec<f32>) {
    let dims = t.dims().to_vec();
    (dims, t.into_data().try_to_vec::<f32>().unwrap_or_default())
}

/// Writes `model.weights.h5` to `path`.
fn write_weights(spec: &SequentialSpec, net: &Net, path: &Path) -> hdf5::Result<()> {
    use hdf5::types::VarLenUnicode;
    let file = hdf5::File::create(path)?;
    let name_attr = |g: &hdf5::Group, name: &str| -> hdf5::Result<()> {
        let v: VarLenUnicode = name.parse().expect("a layer name is plain text");
        g.new_attr::<VarLenUnicode>().create("name")?.write_scalar(&v)
    };
    let layers = file.create_group("layers")?;
    let (mut di, mut ci, mut ni) = (0, 0, 0);
    for (l, name) in spec.layers.iter().zip(saved_names(spec)) {
        let vars = layers.create_group(&name)?.create_group("vars")?;
        name_attr(&vars, &name)?;
        let mut tensors: Vec<(Vec<usize>, Vec<f32>)> = Vec::new();
        match l {
            Layer::Dense { .. } => {
                let d = &net.dense[di];
                tensors.push(values(d.weight.val()));
                tensors.extend(d.bias.as_ref().map(|b| values(b.val())));
                di += 1;
            }
            Layer::Conv2D { .. } => {
                let c = &net.conv[ci];
                // burn's [out, in, kh, kw] back to Keras' [kh, kw, in, out].
                tensors.push(values(c.weight.val().permute([2, 3, 1, 0])));
                tensors.extend(c.bias.as_ref().map(|b| values(b.val())));
                ci += 1;
            }
            Layer::BatchNormalization { .. } => {
                let b = &net.norm[ni];
                tensors.extend([values(b.gamma.val()), values(b.beta.val()), values(b.running_mean.value()), values(b.running_var.value())]);
                ni += 1;
            }
            _ => {}
        }
        for (i, (shape, v)) in tensors.into_iter().enumerate() {
            vars.new_dataset::<f32>().shape(shape).create(i.to_string().as_str())?.write_raw(&v)?;
        }
    }
    let top = file.create_group("vars")?;
    name_attr(&top, "sequential")?;
    file.close()
}

/// Writes the model as a `.keras` file at `out`.
pub fn save_keras(spec: &SequentialSpec, loss: Loss, net: &Net, out: &Path) -> Result<(), ModelError> {
    let tmp = tempfile::NamedTempFile::new().map_err(|e| err(out, e.to_string()))?;
    write_weights(spec, net, tmp.path()).map_err(|e| err(out, format!("writing the weights (HDF5): {e}")))?;
    let weights = std::fs::read(tmp.path()).map_err(|e| err(out, e.to_string()))?;
    let config = serde_json::to_string(&keras_config(spec, loss)).expect("config serialises");
    let metadata = json!({"keras_version": "3.15.1", "date_saved": chrono_free_date()}).to_string();
    let file = std::fs::File::create(out).map_err(|e| err(out, e.to_string()))?;
    let mut zip = zip::ZipWriter::new(file);
    let opts = zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in [("metadata.json", metadata.as_bytes()), ("config.json", config.as_bytes()), ("model.weights.h5", &weights[..])] {
        zip.start_file(name, opts).map_err(|e| err(out, e.to_string()))?;
        zip.write_all(bytes).map_err(|e| err(out, e.to_string()))?;
    }
    zip.finish().map_err(|e| err(out, e.to_string()))?;
    Ok(())
}

/// Seconds since the epoch, as the save date (Keras writes a local date; nothing reads it).
fn chrono_free_date() -> String {
    let s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    format!("@{s}")
}

/// An image model (the MNIST feature preset) as Keras users build it: the 28x28 image in,
/// Flatten, then the layers as they are. A model that already has an input shape is returned
/// as it is. Flatten has no weights, so the net is unchanged.
pub fn image_input(spec: &SequentialSpec) -> SequentialSpec {
    let mut spec = spec.clone();
    if spec.inputs == 28 * 28 && spec.input_shape.is_none() {
        spec.input_shape = Some(vec![28, 28]);
        spec.layers.insert(0, Layer::Flatten);
    }
    spec
}
