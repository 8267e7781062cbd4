//! Keras' saved models in: a `.keras` file (`model.save("m.keras")`: a zip of `config.json`,
//! `metadata.json` and `model.weights.h5`) and a `.weights.h5` (`model.save_weights(...)`)
//! beside the model's `to_json()` in a `.json` of the same stem. The weights are read with
//! HDF5's own library (hdf5-metno over libhdf5) from where Keras 3's `saving_lib` puts them:
//! `layers/<name>/vars/<i>`, the name being the layer's class in snake case with a counter
//! per class (`dense`, `dense_1`, `conv2d`, ...), whatever the user named the layer. Each
//! layer's variables in the order its `build` creates them: Dense and Conv2D `[kernel, bias]`
//! (a convolution's kernel `[kh, kw, in, out]`), BatchNormalization `[gamma, beta,
//! moving_mean, moving_variance]`.

use std::io::Read;
use std::path::{Path, PathBuf};

use burn::module::{Param, RunningState};
use burn::tensor::{Device, Tensor, TensorData};
use hdf5_metno as hdf5;
use serde_json::Value as J;

use super::net::Net;
use super::optim::CompileConfig;
use super::spec::{Layer, SequentialSpec};
use crate::ModelError;

/// A Keras model read from its files.
pub struct KerasModel {
    pub spec: SequentialSpec,
    /// The model's `compile_config`, when it was compiled before saving.
    pub compile: Option<CompileConfig>,
    /// The weights, on the device given.
    pub net: Net,
}

/// Whether `path` names a Keras file: `*.keras` or `*.weights.h5`.
pub fn is_keras_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    path.is_file() && (name.ends_with(".keras") || name.ends_with(".weights.h5"))
}

fn err(path: &Path, reason: impl Into<String>) -> ModelError {
    ModelError::Checkpoint { path: path.into(), reason: reason.into() }
}

/// Keras' `naming.to_snake_case`: `MaxPooling2D` → `max_pooling2d`.
pub(crate) fn snake_case(class: &str) -> String {
    let chars: Vec<char> = class.chars().filter(|c| c.is_alphanumeric() || *c == '_').collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        // `(.)([A-Z][a-z]+)` → `\1_\2`, then `([a-z])([A-Z])` → `\1_\2`.
        let word_start = c.is_ascii_uppercase() && chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
        if i > 0 && c.is_ascii_uppercase() && (word_start || chars[i - 1].is_ascii_lowercase()) {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// The name under `layers/` of each layer, as Keras 3's `_save_container_state` gives it.
pub(crate) fn saved_names(spec: &SequentialSpec) -> Vec<String> {
    let mut used: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    spec.layers
        .iter()
        .map(|l| {
            let base = snake_case(l.class_name());
            let n = used.entry(base.clone()).and_modify(|n| *n += 1).or_insert(0);
            if *n == 0 {
                base
            } else {
                format!("{base}_{n}")
            }
        })
        .collect()
}

/// Reads a Keras model from `path` (see the module's notes) onto `device`.
pub fn load(path: &Path, device: &Device) -> Result<KerasModel, ModelError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let (doc, h5, _held) = if name.ends_with(".keras") {
        let file = std::fs::File::open(path).map_err(|e| err(path, e.to_string()))?;
        let mut zip = zip::ZipArchive::new(file).map_err(|e| err(path, format!("not a .keras file (a zip archive): {e}")))?;
        let mut text = String::new();
        zip.by_name("config.json")
            .map_err(|e| err(path, format!("config.json: {e}")))?
            .read_to_string(&mut text)
            .map_err(|e| err(path, format!("config.json: {e}")))?;
        let doc: J = serde_json::from_str(&text).map_err(|e| err(path, format!("config.json is not JSON: {e}")))?;
        let mut tmp = tempfile::NamedTempFile::new().map_err(|e| err(path, e.to_string()))?;
        let mut weights = zip.by_name("model.weights.h5").map_err(|e| err(path, format!("model.weights.h5: {e}")))?;
        std::io::copy(&mut weights, &mut tmp).map_err(|e| err(path, format!("model.weights.h5: {e}")))?;
        let h5 = tmp.path().to_path_buf();
        (doc, h5, Some(tmp))
    } else {
        let json = PathBuf::from(path.to_string_lossy().trim_end_matches(".weights.h5").to_string() + ".json");
        let text = std::fs::read_to_string(&json)
            .map_err(|e| err(path, format!("the model's architecture is read from {} (model.to_json()): {e}", json.display())))?;
        let doc: J = serde_json::from_str(&text).map_err(|e| err(&json, format!("not JSON: {e}")))?;
        (doc, path.to_path_buf(), None)
    };
    let spec = SequentialSpec::from_keras_value(&doc, None).map_err(|e| err(path, e.to_string()))?;
    // Serving needs only the loss (for evaluate's figure); one tensorcdc does not implement
    // (categorical_crossentropy on one-hot labels, say) is left out and said.
    let compile = match doc.get("compile_config") {
        None | Some(J::Null) => None,
        Some(c) => match CompileConfig::from_keras_value(c) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("note: {}: {e}; the loss is taken from the last layer instead", path.display());
                None
            }
        },
    };
    let file = hdf5::File::open(&h5).map_err(|e| err(path, format!("the weights (HDF5): {e}")))?;
    let net = read_weights(&spec, &file, device).map_err(|e| err(path, e))?;
    Ok(KerasModel { spec, compile, net })
}

/// One variable: its shape and values (row-major).
fn var(file: &hdf5::File, group: &str, i: usize) -> Result<(Vec<usize>, Vec<f32>), String> {
    let at = format!("{group}/{i}");
    let ds = file.dataset(&at).map_err(|_| format!("no variable {at} in the weights"))?;
    let values = ds.read_raw::<f32>().map_err(|e| format!("{at}: {e}"))?;
    Ok((ds.shape(), values))
}

fn expect(at: &str, got: &[usize], want: &[usize]) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{at} has the shape {got:?}, the model's config makes {want:?}"))
    }
}

fn read_weights(spec: &SequentialSpec, file: &hdf5::File, device: &Device) -> Result<Net, String> {
    let mut net = spec.init(device).map_err(|e| e.to_string())?;
    let shapes = spec.input_shapes().map_err(|e| e.to_string())?;
    let (mut di, mut ci, mut ni) = (0, 0, 0);
    for ((l, name), shape) in spec.layers.iter().zip(saved_names(spec)).zip(shapes) {
        let group = format!("layers/{name}/vars");
        let count = file.group(&group).and_then(|g| g.member_names()).map(|m| m.len()).unwrap_or(0);
        let want = match l {
            Layer::Dense { use_bias, .. } | Layer::Conv2D { use_bias, .. } => 1 + *use_bias as usize,
            Layer::BatchNormalization { .. } => 4,
            _ => 0,
        };
        if count != want {
            return Err(format!("{group} holds {count} variables, a {} layer has {want}", l.class_name()));
        }
        let t1 = |(s, v): (Vec<usize>, Vec<f32>), n: usize, at: String| -> Result<Tensor<1>, String> {
            expect(&at, &s, &[n])?;
            Ok(Tensor::<1>::from_data(TensorData::new(v, [n]), device))
        };
        match l {
            Layer::Dense { units, use_bias, .. } => {
                let (s, v) = var(file, &group, 0)?;
                expect(&format!("{group}/0"), &s, &[shape[0], *units])?;
                net.dense[di].weight = Param::from_tensor(Tensor::<2>::from_data(TensorData::new(v, [shape[0], *units]), device));
                if *use_bias {
                    net.dense[di].bias = Some(Param::from_tensor(t1(var(file, &group, 1)?, *units, format!("{group}/1"))?));
                }
                di += 1;
            }
            Layer::Conv2D { filters, kernel_size: [kh, kw], use_bias, .. } => {
                let (s, v) = var(file, &group, 0)?;
                let c_in = shape[2];
                expect(&format!("{group}/0"), &s, &[*kh, *kw, c_in, *filters])?;
                // Keras' [kh, kw, in, out] to burn's [out, in, kh, kw].
                let k = Tensor::<4>::from_data(TensorData::new(v, [*kh, *kw, c_in, *filters]), device).permute([3, 2, 0, 1]);
                net.conv[ci].weight = Param::from_tensor(k);
                if *use_bias {
                    net.conv[ci].bias = Some(Param::from_tensor(t1(var(file, &group, 1)?, *filters, format!("{group}/1"))?));
                }
                ci += 1;
            }
            Layer::BatchNormalization { .. } => {
                let n = *shape.last().unwrap_or(&0);
                let at = |i| format!("{group}/{i}");
                let b = &mut net.norm[ni];
                b.gamma = Param::from_tensor(t1(var(file, &group, 0)?, n, at(0))?);
                b.beta = Param::from_tensor(t1(var(file, &group, 1)?, n, at(1))?);
                b.running_mean = RunningState::new(t1(var(file, &group, 2)?, n, at(2))?);
                b.running_var = RunningState::new(t1(var(file, &group, 3)?, n, at(3))?);
                ni += 1;
            }
            _ => {}
        }
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_keras_saves_them() {
        // Keras 3.15's `naming.to_snake_case` of each class, and the counters of a model with
        // two Dense and two Conv2D layers (h5py's listing of a saved model.weights.h5).
        for (class, want) in [
            ("Dense", "dense"),
            ("Conv2D", "conv2d"),
            ("MaxPooling2D", "max_pooling2d"),
            ("AveragePooling2D", "average_pooling2d"),
            ("GlobalAveragePooling2D", "global_average_pooling2d"),
            ("BatchNormalization", "batch_normalization"),
        ] {
            assert_eq!(snake_case(class), want);
        }
        let cnn = SequentialSpec::from_keras_json(
            r#"{"class_name": "Sequential", "config": {"layers": [
              {"class_name": "InputLayer", "config": {"batch_shape": [null, 8, 8, 1]}},
              {"class_name": "Conv2D", "config": {"filters": 2, "kernel_size": [3, 3]}},
              {"class_name": "Conv2D", "config": {"filters": 2, "kernel_size": [3, 3]}},
              {"class_name": "Flatten", "config": {}},
              {"class_name": "Dense", "config": {"units": 4}},
              {"class_name": "Dense", "config": {"units": 2}}]}}"#,
            64,
        )
        .unwrap();
        assert_eq!(saved_names(&cnn), ["conv2d", "conv2d_1", "flatten", "dense", "dense_1"]);
    }
}
