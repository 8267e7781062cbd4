//! Which I/O `train`, `evaluate` and `predict` take: the blog's images (`train.rs`,
//! `follow.rs`: images in, digits out), or a table's rows (`tabular.rs`). The model, trainer,
//! predictor and checkpoint are the same general ones on both; an image model is one whose
//! feature spec is the MNIST preset. The choice is made here, once per command, so neither
//! path imports the other.

use anyhow::{bail, Result};
use tensorcdc_model::sequential::checkpoint::is_image_model;
use tensorcdc_model::sequential::FitSettings;

use crate::args::{EvaluateArgs, PredictArgs, TrainArgs};
use crate::{follow, tabular, train};

pub fn train(a: TrainArgs) -> Result<()> {
    if a.model.general() {
        let settings =
            FitSettings { epochs: a.epochs, batch_size: a.batch_size, learning_rate: a.learning_rate, seed: a.seed, optimizer: None, threads: a.threads };
        return tabular::train(&a.source, &a.model, settings, &a.out, a.curves.as_deref());
    }
    // The blog's images: the same trainer on the MNIST preset.
    train::train(a)
}

pub fn evaluate(a: EvaluateArgs) -> Result<()> {
    if is_image_model(&a.model) || a.source.data.is_some() || a.source.group.is_some() {
        return train::evaluate(a);
    }
    tabular::evaluate(&a.source, &a.model)
}

pub fn predict(a: PredictArgs) -> Result<()> {
    if a.follow {
        return if is_image_model(&a.model) { follow::follow(a) } else { tabular::follow(&a) };
    }
    if let Some(row) = &a.row {
        if is_image_model(&a.model) {
            bail!("--row needs a model trained on a table (train --label COL); {} is an image model: give the image with --pixels", a.model.display());
        }
        return tabular::predict_row(&a.model, row);
    }
    train::predict(a)
}
