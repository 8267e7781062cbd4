//! The flags of `train`, `evaluate` and `predict`, for both paths: the blog's network
//! (`train.rs`, `follow.rs`) and any table with any model (`tabular.rs`);
//! [`crate::commands`] picks the path.

use std::path::PathBuf;

use crate::source::SourceArgs;

#[derive(clap::Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Checkpoint folder to write (config.json + model.bpk).
    #[arg(long, default_value = "model")]
    pub out: PathBuf,
    /// Passes over the training rows.
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    /// Rows per training step (the blog's batch(64)).
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Adam's learning rate (Keras' default).
    #[arg(long, default_value_t = 0.001)]
    pub learning_rate: f64,
    /// Seed of the weight initialisation and of each epoch's shuffle.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Threads training the model (the hidden layer is split in column blocks, one per thread);
    /// 0: one per CPU core.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Write the training curves (loss, accuracy by epoch) to this PNG.
    #[arg(long)]
    pub curves: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(clap::Args)]
pub struct EvaluateArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Checkpoint folder written by `train`.
    #[arg(long, default_value = "model")]
    pub model: PathBuf,
}

#[derive(clap::Args)]
pub struct PredictArgs {
    /// Checkpoint folder written by `train`.
    #[arg(long, default_value = "model")]
    pub model: PathBuf,
    /// 784 pixel values 0..=255 (row-major 28x28), comma-separated, or as a JSON / Python
    /// list ("[0, 0, ...]").
    #[arg(long, required_unless_present_any = ["follow", "row"])]
    pub pixels: Option<String>,
    /// A row to classify with a model trained with --label: a JSON object of column values.
    #[arg(long, conflicts_with = "pixels")]
    pub row: Option<String>,
    /// Classify rows as they arrive (--kafka ... --topic T, or --source postgres://...).
    #[arg(long)]
    pub follow: bool,
    #[command(flatten)]
    pub source: SourceArgs,
    /// Also write each prediction as JSON to this Kafka topic (on the --kafka brokers).
    #[arg(long)]
    pub predictions_topic: Option<String>,
    /// Also insert each prediction into this Postgres table (created if missing).
    #[arg(long)]
    pub predictions_table: Option<String>,
    /// Postgres URL for --predictions-table (default: --source).
    #[arg(long)]
    pub predictions_db: Option<String>,
    /// Stop after this many predictions.
    #[arg(long)]
    pub max: Option<usize>,
    /// Also write the digit, enlarged, with the prediction as its title.
    #[arg(long)]
    pub png: Option<PathBuf>,
    /// Names of the ten classes of an image model: digits, fashion (Fashion-MNIST's
    /// T-shirt/top ... Ankle boot), or ten names separated by commas; shown and written as
    /// `class` beside the label number.
    #[arg(long, default_value = "digits")]
    pub classes: String,
}

/// The flags of the general path.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ModelArgs {
    /// The label column (classes from integers, text and booleans; regression from other numbers).
    #[arg(long)]
    pub label: Option<String>,
    /// Feature columns (default: every column but the primary key and the label).
    #[arg(long, value_delimiter = ',')]
    pub features: Option<Vec<String>>,
    /// Scaling of number columns: standard, minmax or none.
    #[arg(long, default_value = "standard")]
    pub scaling: String,
    /// A NULL feature: skip the row (counted) or impute (mean / most frequent).
    #[arg(long, default_value = "skip")]
    pub nulls: String,
    /// classification or regression (default: from the label's type).
    #[arg(long)]
    pub task: Option<String>,
    /// Hidden Dense(relu) layers, e.g. 64,64 (the output layer is sized by the task).
    #[arg(long, value_delimiter = ',')]
    pub layers: Option<Vec<usize>>,
    /// The JSON of Keras' `model.to_json()` (a Sequential model).
    #[arg(long)]
    pub model_spec: Option<PathBuf>,
    /// sparse_categorical_crossentropy, binary_crossentropy, mse, mae or huber (default: by task).
    #[arg(long)]
    pub loss: Option<String>,
    /// The JSON of Keras' `model.get_compile_config()`: optimizer (Adam, AdamW, SGD, RMSprop)
    /// and loss.
    #[arg(long)]
    pub compile_config: Option<PathBuf>,
}

impl ModelArgs {
    /// True when these flags ask for the general path.
    pub fn general(&self) -> bool {
        self.label.is_some() || self.model_spec.is_some() || self.layers.is_some()
    }
}
