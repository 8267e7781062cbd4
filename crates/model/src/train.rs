//! The fit / evaluate / predict loops (Keras' `model.fit`, `model.evaluate`, `model.predict`).

use std::time::{Duration, Instant};

use burn::module::Module;
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::nn::Linear;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use tensorcdc_dataset::{scale_pixels, Examples, PIXELS};

use crate::parallel::{join_columns, split_columns, widths, Block, Worker};
use crate::{FusedAdam, Metrics, Mlp, MlpConfig, ModelError};

/// Keras' compile and fit settings for the blog's model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    pub seed: u64,
    /// Threads training the hidden layer (one column block each); 0: one per CPU core.
    pub threads: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig { epochs: 5, batch_size: 64, learning_rate: 0.001, beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7, seed: 42, threads: 0 }
    }
}

impl TrainConfig {
    /// The number of hidden-layer blocks to train in parallel.
    pub fn thread_count(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            n => n,
        }
    }

    /// Checks the values, naming the bad one.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.epochs == 0 {
            return Err(ModelError::Input("epochs must be at least 1".into()));
        }
        if self.batch_size == 0 {
            return Err(ModelError::Input("batch_size must be at least 1".into()));
        }
        if self.learning_rate.is_nan() || self.learning_rate <= 0.0 {
            return Err(ModelError::Input(format!("learning_rate must be > 0, got {}", self.learning_rate)));
        }
        Ok(())
    }
}

/// Progress inside an epoch, after each step.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub epoch: usize,
    pub epochs: usize,
    pub step: usize,
    pub steps: usize,
    pub metrics: Metrics,
}

/// What one epoch achieved.
#[derive(Debug, Clone, Copy)]
pub struct EpochEnd {
    pub epoch: usize,
    pub metrics: Metrics,
    pub elapsed: Duration,
}

/// Owns the model, its optimizer state and the device, and runs the loops.
///
/// The hidden layer is trained in column blocks, one per thread ([`TrainConfig::threads`]):
/// the first on the caller's thread, the others on worker threads that live as long as the
/// trainer (see `parallel.rs`). The output layer and the loss run on the caller's thread.
pub struct Trainer {
    pub config: MlpConfig,
    pub train: TrainConfig,
    /// The first hidden block, stepped on the caller's thread.
    local: Block,
    /// The other hidden blocks, one worker thread each.
    workers: Vec<Worker>,
    /// The output layer and its optimizer.
    head: Option<Linear>,
    head_optim: ModuleOptimizer,
    loss: CrossEntropyLoss,
    device: Device,
    /// Epochs completed so far (also shifts the shuffle seed).
    pub epochs_done: usize,
    /// The next step's batch, gathered ahead.
    prepared: Option<Batch>,
}

/// A batch as the model takes it.
struct Batch {
    indices: Vec<usize>,
    x: Tensor<2>,
    labels: Vec<i64>,
}

impl Trainer {
    /// A fresh model on `device` (autodiff is enabled here).
    pub fn new(config: MlpConfig, train: TrainConfig, device: &Device) -> Result<Self, ModelError> {
        train.validate()?;
        let device = device.clone().autodiff();
        // burn's CPU backend has one random generator per process. Seeding it and drawing the
        // initial weights (burn draws them lazily, on first read) must not interleave with another trainer doing the same, or a seed would not give its weights.
        static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _init = INIT.lock().unwrap_or_else(|e| e.into_inner());
        device.seed(train.seed);
        let model = config.init(&device);
        // Draw both kernels now, in layer order, while the generator is held.
        let _ = (model.fc1.weight.val(), model.fc2.weight.val());
        drop(_init);
        Ok(Self::from_model(config, train, model, device))
    }

    pub(crate) fn from_model(config: MlpConfig, train: TrainConfig, model: Mlp, device: Device) -> Self {
        let adam = FusedAdam { beta_1: train.beta_1, beta_2: train.beta_2, epsilon: train.epsilon };
        // Column blocks spread the work over CPU cores; a GPU takes the whole layer at once.
        let parts = if crate::is_cpu(&device) { train.thread_count() } else { 1 };
        let mut blocks = split_columns(&model.fc1, &widths(config.hidden, parts)).into_iter().map(|l| Block::new(l, adam));
        let local = blocks.next().expect("at least one block");
        let workers = blocks.enumerate().map(|(i, b)| Worker::spawn(b, format!("train-block-{}", i + 1))).collect();
        let loss = CrossEntropyLossConfig::new().init(&device);
        Trainer { config, train, local, workers, head: Some(model.fc2), head_optim: ModuleOptimizer::from(adam), loss, device, epochs_done: 0, prepared: None }
    }

    /// A copy of the model in its current state (the hidden blocks joined into one layer).
    pub fn model(&self) -> Mlp {
        let mut blocks = vec![self.local.layer().clone()];
        blocks.extend(self.workers.iter().map(Worker::layer));
        Mlp { fc1: join_columns(&blocks), fc2: self.head().clone() }
    }

    fn head(&self) -> &Linear {
        self.head.as_ref().expect("output layer present between steps")
    }

    /// The device the model lives on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// One optimisation step on the examples at `indices`; returns (mean loss, correct).
    pub fn step(&mut self, data: &Examples, indices: &[usize]) -> (f64, usize) {
        // A batch read ahead belongs to `fit_epoch`'s data; a direct call gathers its own.
        self.prepared = None;
        self.step_then_prepare(data, indices, None)
    }

    /// The batch at `indices` as tensors (pixels / 255, labels).
    fn batch(&self, data: &Examples, indices: &[usize]) -> Batch {
        // Fresh buffers: the pixels move into the tensor, the labels into the batch.
        let (mut px, mut labels) = (Vec::new(), Vec::new());
        data.gather(indices, &mut px, &mut labels);
        let n = indices.len();
        Batch { indices: indices.to_vec(), x: Tensor::<2>::from_data(TensorData::new(px, [n, PIXELS]), &self.device), labels }
    }

    /// [`step`](Self::step), and while the worker threads finish their forward pass, gathers
    /// the batch at `next` for the following step (reading 64 scattered images is mostly
    /// waiting for memory, which this overlaps with their work).
    fn step_then_prepare(&mut self, data: &Examples, indices: &[usize], next: Option<&[usize]>) -> (f64, usize) {
        let n = indices.len();
        let lr = self.train.learning_rate;
        let batch = match self.prepared.take() {
            Some(b) if b.indices == indices => b,
            _ => self.batch(data, indices),
        };
        let x = batch.x;
        let y = Tensor::<1, Int>::from_data(TensorData::new(batch.labels.clone(), [n]), &self.device);
        // Hidden blocks: all start, then the activations are collected in order.
        for w in &self.workers {
            w.start_forward(x.clone());
        }
        let mut hidden = vec![self.local.forward(x)];
        if let Some(next) = next {
            self.prepared = Some(self.batch(data, next));
        }
        hidden.extend(self.workers.iter().map(Worker::finish_forward));
        // Output layer and loss on the joined activations, each block's part a leaf.
        let leaves: Vec<Tensor<2>> = hidden.into_iter().map(|h| Tensor::from_inner(h).require_grad()).collect();
        let logits = self.head().forward(Tensor::cat(leaves.clone(), 1));
        // Accuracy from the logits read back once (64 x 10 floats), not from more tensor ops.
        let read = logits.clone().detach().into_data().try_to_vec::<f32>().unwrap_or_default();
        let correct = read.chunks(self.config.classes).zip(&batch.labels).filter(|(row, &l)| argmax(row).0 as i64 == l).count();
        let loss = self.loss.forward(logits, y);
        let grads = loss.backward();
        let loss_value = loss.into_scalar::<f32>() as f64;
        // Each block back-propagates its share; the workers' run while this thread does its own.
        let mut dh = leaves.iter().map(|l| l.grad(&grads).expect("activation gradient"));
        let local_dh = dh.next().expect("at least one block");
        for (w, g) in self.workers.iter().zip(dh) {
            w.start_backward(g, lr);
        }
        self.local.backward(local_dh, lr);
        let head = self.head.take().expect("output layer present between steps");
        let grads = GradientsParams::from_grads(grads, &head);
        self.head = Some(self.head_optim.step(lr, head, grads));
        (loss_value, correct)
    }

    /// One epoch over `data`, shuffled with the seed and the epoch number.
    pub fn fit_epoch(&mut self, data: &Examples, mut on_step: impl FnMut(&Progress)) -> EpochEnd {
        let start = Instant::now();
        let order = data.epoch_order(self.train.seed.wrapping_add(self.epochs_done as u64));
        let steps = order.len().div_ceil(self.train.batch_size);
        let mut metrics = Metrics::default();
        let chunks: Vec<&[usize]> = order.chunks(self.train.batch_size).collect();
        for (step, &chunk) in chunks.iter().enumerate() {
            let (loss, correct) = self.step_then_prepare(data, chunk, chunks.get(step + 1).copied());
            metrics.add(chunk.len(), loss, correct);
            on_step(&Progress { epoch: self.epochs_done + 1, epochs: self.train.epochs, step: step + 1, steps, metrics });
        }
        self.epochs_done += 1;
        EpochEnd { epoch: self.epochs_done, metrics, elapsed: start.elapsed() }
    }

    /// Keras' `fit`: `train.epochs` epochs; `on_epoch` after each.
    pub fn fit(&mut self, data: &Examples, mut on_step: impl FnMut(&Progress), mut on_epoch: impl FnMut(&EpochEnd)) -> Vec<EpochEnd> {
        let mut ends = Vec::new();
        for _ in 0..self.train.epochs {
            let end = self.fit_epoch(data, &mut on_step);
            on_epoch(&end);
            ends.push(end);
        }
        ends
    }

    /// An inference view of the current weights (no autodiff).
    pub fn predictor(&self) -> Predictor {
        Predictor { model: self.model().valid(), config: self.config }
    }
}

/// Inference: evaluation and prediction on a model without autodiff.
#[derive(Debug, Clone)]
pub struct Predictor {
    pub model: Mlp,
    pub config: MlpConfig,
}

impl Predictor {
    fn device(&self) -> Device {
        self.model.fc1.weight.val().device()
    }

    /// Logits for `n` images of contiguous pixel bytes.
    fn logits(&self, pixels: &[u8]) -> Tensor<2> {
        let n = pixels.len() / PIXELS;
        let mut px = vec![0.0f32; pixels.len()];
        scale_pixels(pixels, &mut px);
        self.model.forward(Tensor::<2>::from_data(TensorData::new(px, [n, PIXELS]), &self.device()))
    }

    /// Adds a batch of examples to running metrics (Keras' `evaluate`, one batch at a time,
    /// so rows can be evaluated as they arrive).
    pub fn evaluate_batch(&self, pixels: &[u8], labels: &[u8], metrics: &mut Metrics) {
        if labels.is_empty() {
            return;
        }
        let device = self.device();
        let logits = self.logits(pixels);
        let y = Tensor::<1, Int>::from_data(TensorData::new(labels.iter().map(|&l| l as i64).collect::<Vec<_>>(), [labels.len()]), &device);
        let correct = logits.clone().argmax(1).squeeze_dim::<1>(1).equal(y.clone()).int().sum().into_scalar::<i64>() as usize;
        let loss = CrossEntropyLossConfig::new().init(&device).forward(logits, y).into_scalar::<f32>() as f64;
        metrics.add(labels.len(), loss, correct);
    }

    /// Evaluates a whole set in batches of `batch_size`.
    pub fn evaluate(&self, data: &Examples, batch_size: usize) -> Metrics {
        let mut m = Metrics::default();
        let bs = batch_size.max(1);
        for start in (0..data.len()).step_by(bs) {
            let end = (start + bs).min(data.len());
            self.evaluate_batch(&data.pixels[start * PIXELS..end * PIXELS], &data.labels[start..end], &mut m);
        }
        m
    }

    /// Softmax probabilities, one row of `classes` per image.
    pub fn predict(&self, pixels: &[u8]) -> Result<Vec<Vec<f32>>, ModelError> {
        if pixels.is_empty() || !pixels.len().is_multiple_of(PIXELS) {
            return Err(ModelError::Input(format!("{} pixel values, expected a multiple of {PIXELS} (28x28)", pixels.len())));
        }
        let probs = softmax(self.logits(pixels), 1).into_data().try_to_vec::<f32>().map_err(|e| ModelError::Input(format!("{e:?}")))?;
        Ok(probs.chunks(self.config.classes).map(|c| c.to_vec()).collect())
    }
}

/// The index and value of the largest probability.
pub fn argmax(probs: &[f32]) -> (usize, f32) {
    probs.iter().copied().enumerate().fold((0, f32::MIN), |best, (i, p)| if p > best.1 { (i, p) } else { best })
}
