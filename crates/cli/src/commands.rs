//! Which path `train`, `evaluate` and `predict` take: the blog's network on MNIST examples
//! (`train.rs`, `follow.rs`), or any table with a general checkpoint, a Keras file or an ONNX
//! graph (`tabular.rs`). The choice is made here, once per command, so neither path imports
//! the other.

use anyhow::{bail, Result};
use tensorcdc_model::sequential::checkpoint::is_sequential;
use tensorcdc_model::sequential::FitSettings;

use crate::args::{EvaluateArgs, PredictArgs, TrainArgs};
use crate::{follow, tabular, train};

pub fn train(a: TrainArgs) -> Result<()> {
    if a.model.general() {
        let settings = FitSettings { epochs: a.epochs, batch_size: a.batch_size, learning_rate: a.learning_rate, seed: a.seed, optimizer: None, threads: a.threads };
        return tabular::train(&a.source, &a.model, settings, &a.out, a.curves.as_deref());
    }
    train::train(a)
}

pub fn evaluate(a: EvaluateArgs) -> Result<()> {
    if is_sequential(&a.model) && a.source.group.is_none() {
        if a.source.data.is_some() {
            return train::evaluate_images(&a);
        }
        return tabular::evaluate(&a.source, &a.model);
    }
    train::evaluate(a)
}

pub fn predict(a: PredictArgs) -> Result<()> {
    if a.follow {
        return if is_sequential(&a.model) { tabular::follow(&a) } else { follow::follow(a) };
    }
    if let Some(row) = &a.row {
        if !is_sequential(&a.model) && a.model.join("config.json").exists() {
            bail!("--row needs a model trained on a table (train --label COL); {} is an image model: give the image with --pixels", a.model.display());
        }
        return tabular::predict_row(&a.model, row);
    }
    train::predict(a)
}
