//! `export`: a tensorcdc checkpoint out to a Keras `.keras` file or an ONNX file.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use tensorcdc_model::device_from_env;
use tensorcdc_model::sequential::{checkpoint as seq_checkpoint, keras_export, onnx_export};

#[derive(clap::Args)]
pub struct ExportArgs {
    /// Checkpoint folder written by `train` or `run` (a version folder).
    #[arg(long, default_value = "model")]
    pub model: PathBuf,
    /// keras: a `.keras` file that Keras 3's `keras.models.load_model` reads; onnx: an ONNX
    /// file (opset 13) of input `input` [batch, features] and output `probabilities` (or
    /// `value`), which onnxruntime runs.
    #[arg(long, default_value = "keras")]
    pub format: String,
    /// The file to write.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn export(a: ExportArgs) -> Result<()> {
    if !["keras", "onnx"].contains(&a.format.as_str()) {
        bail!("--format {:?}: expected keras or onnx", a.format);
    }
    let device = device_from_env()?;
    let (meta, p) = seq_checkpoint::load(&a.model, &device).context("loading the model")?;
    let (spec, loss, net) = (p.spec, p.loss, p.net);
    let (spec, what) = if seq_checkpoint::is_image_model(&a.model) {
        (keras_export::image_input(&spec), "a 28x28 image (pixels / 255)".to_string())
    } else {
        (spec, format!("{} features from {}", meta.features.width(), meta.features.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")))
    };
    if a.format == "onnx" {
        onnx_export::save_onnx(&spec, loss, &net, &a.out)?;
    } else {
        keras_export::save_keras(&spec, loss, &net, &a.out)?;
    }
    let layers: Vec<&str> = spec.layers.iter().map(|l| l.class_name()).collect();
    println!("wrote {} ({}): {} layers ({}), input {what}", a.out.display(), a.format, layers.len(), layers.join(", "));
    if a.format == "onnx" {
        println!("input \"input\" [batch, {}], output {}", spec.inputs, if loss.is_classification() { "\"probabilities\" (tensorcdc's)" } else { "\"value\"" });
    } else if loss.is_classification()
        && !matches!(spec.final_activation(), tensorcdc_model::sequential::Activation::Softmax | tensorcdc_model::sequential::Activation::Sigmoid)
    {
        println!("the model ends in logits: Keras' predict gives them, their softmax (sigmoid for one unit) is tensorcdc's probabilities");
    }
    Ok(())
}
