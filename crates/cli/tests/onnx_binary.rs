//! A binary classifier with one sigmoid output (Keras' `Dense(1, "sigmoid")`, trained by
//! tensorcdc from its `to_json()`), exported to ONNX and served from the ONNX file: the same
//! classifier, the probability `p` of the second class read as `[1 - p, p]` (it was read as a
//! regression's value before, so every row was class 0). The expectation is the checkpoint's
//! own `evaluate` on the same rows, through burn, not ONNX.

mod common;
use common::{cancer_table, ok};

/// Keras 3.15's `Sequential([Input((30,)), Dense(16, "relu"), Dropout(0.2),
/// Dense(1, "sigmoid")]).to_json()` (trimmed of dtype policies).
const KERAS: &str = r#"{"module": "keras", "class_name": "Sequential", "config": {"name": "sequential", "trainable": true,
  "layers": [{"module": "keras.layers", "class_name": "InputLayer", "config": {"batch_shape": [null, 30], "dtype": "float32", "sparse": false, "name": "input_layer"}, "registered_name": null},
  {"module": "keras.layers", "class_name": "Dense", "config": {"name": "dense", "trainable": true, "units": 16, "activation": "relu", "use_bias": true,
    "kernel_initializer": {"module": "keras.initializers", "class_name": "GlorotUniform", "config": {"seed": null}, "registered_name": null},
    "bias_initializer": {"module": "keras.initializers", "class_name": "Zeros", "config": {}, "registered_name": null}, "kernel_regularizer": null}, "build_config": {"input_shape": [null, 30]}},
  {"module": "keras.layers", "class_name": "Dropout", "config": {"name": "dropout", "trainable": true, "rate": 0.2, "seed": null, "noise_shape": null}},
  {"module": "keras.layers", "class_name": "Dense", "config": {"name": "dense_1", "units": 1, "activation": "sigmoid", "use_bias": true,
    "kernel_initializer": {"module": "keras.initializers", "class_name": "HeNormal", "config": {"seed": null}}, "bias_initializer": {"class_name": "Zeros", "config": {}}}}],
  "build_input_shape": [null, 30]}, "registered_name": null}"#;

fn metric(out: &str, key: &str) -> f64 {
    let at = out.rfind(&format!("{key}: ")).unwrap_or_else(|| panic!("no {key} in {out}")) + key.len() + 2;
    out[at..].split_whitespace().next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigmoid_classifier_exported_to_onnx_serves_as_the_same_classifier() {
    let dir = tempfile::tempdir().unwrap();
    let (pg, c, header, rows) = cancer_table(dir.path(), "int").await;
    let values: Vec<String> = rows.iter().enumerate().map(|(i, r)| format!("({},{})", i + 1, r.join(","))).collect();
    c.batch_execute(&format!("INSERT INTO cancer(id,{}) VALUES {}", header.join(","), values.join(","))).await.unwrap();
    let url = pg.url("postgres");
    let spec = dir.path().join("model.json");
    std::fs::write(&spec, KERAS).unwrap();
    let model = dir.path().join("model");
    let m = model.to_str().unwrap();
    ok(&["train", "--source", &url, "--table", "cancer", "--label", "target", "--model-spec", spec.to_str().unwrap(), "--epochs", "10", "--out", m]);
    let onnx = dir.path().join("cancer.onnx");
    ok(&["export", "--model", m, "--format", "onnx", "--out", onnx.to_str().unwrap()]);
    // The feature spec beside the ONNX file: the checkpoint's.
    let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(model.join("model.json")).unwrap()).unwrap();
    std::fs::write(dir.path().join("cancer.onnx.features.json"), meta["features"].to_string()).unwrap();
    let from_checkpoint = ok(&["evaluate", "--source", &url, "--table", "cancer", "--model", m]);
    let from_onnx = ok(&["evaluate", "--source", &url, "--table", "cancer", "--model", onnx.to_str().unwrap()]);
    let (a, b) = (metric(&from_checkpoint, "accuracy"), metric(&from_onnx, "accuracy"));
    assert!(a > 0.8, "{from_checkpoint}");
    assert_eq!(a, b, "the ONNX file classifies as the checkpoint does:\n{from_checkpoint}\n{from_onnx}");
    assert!((metric(&from_checkpoint, "loss") - metric(&from_onnx, "loss")).abs() < 1e-3, "{from_checkpoint}\n{from_onnx}");
}
