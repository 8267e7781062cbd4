//! Keras' `fit`, `evaluate` and `predict` for any Sequential model on feature vectors: the
//! loss (sparse categorical or binary cross-entropy from logits, mean squared or absolute
//! error, Huber), Keras' Adam ([`crate::FusedAdam`]), shuffled mini-batches.

use std::time::{Duration, Instant};

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use super::data::{Data, Targets};
use super::fused::{self, Fused};
use super::net::{activate, Net};
use super::optim::{KerasOptimizer, OptimizerSpec};
use super::spec::{Activation, SequentialSpec};
use crate::ModelError;

/// The loss, Keras' names.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    SparseCategoricalCrossentropy,
    BinaryCrossentropy,
    MeanSquaredError,
    MeanAbsoluteError,
    Huber { delta: f64 },
}

impl Loss {
    pub fn is_classification(self) -> bool {
        matches!(self, Loss::SparseCategoricalCrossentropy | Loss::BinaryCrossentropy)
    }

    pub fn parse(name: &str) -> Result<Loss, ModelError> {
        Ok(match name {
            "sparse_categorical_crossentropy" => Loss::SparseCategoricalCrossentropy,
            "binary_crossentropy" => Loss::BinaryCrossentropy,
            "mean_squared_error" | "mse" => Loss::MeanSquaredError,
            "mean_absolute_error" | "mae" => Loss::MeanAbsoluteError,
            "huber" => Loss::Huber { delta: 1.0 },
            o => {
                return Err(ModelError::Unsupported {
                    what: "loss",
                    name: o.into(),
                    supported: "sparse_categorical_crossentropy, binary_crossentropy, mse, mae or huber",
                })
            }
        })
    }
}

/// Keras' `compile`/`fit` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FitSettings {
    pub epochs: usize,
    pub batch_size: usize,
    /// The learning rate of the default optimizer (Keras' Adam).
    pub learning_rate: f64,
    pub seed: u64,
    /// The optimizer of a Keras compile config (`None`: Adam at `learning_rate`).
    pub optimizer: Option<OptimizerSpec>,
    /// Threads training a first `Dense(relu)` layer in column blocks (the fused strategy,
    /// `fused.rs`): 1 trains on the caller's thread only, 0 uses one per CPU core.
    pub threads: usize,
}

impl Default for FitSettings {
    fn default() -> Self {
        FitSettings { epochs: 5, batch_size: 64, learning_rate: 0.001, seed: 42, optimizer: None, threads: 1 }
    }
}

impl FitSettings {
    pub fn optimizer(&self) -> OptimizerSpec {
        self.optimizer.unwrap_or(OptimizerSpec::adam(self.learning_rate))
    }
}

/// Running metrics: loss, and accuracy or absolute and squared errors.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FitMetrics {
    pub n: usize,
    pub loss_sum: f64,
    pub correct: usize,
    pub abs_err: f64,
    pub sq_err: f64,
}

impl FitMetrics {
    /// Adds the sums of `other` (another batch) to these.
    pub fn add(&mut self, other: &FitMetrics) {
        self.n += other.n;
        self.loss_sum += other.loss_sum;
        self.correct += other.correct;
        self.abs_err += other.abs_err;
        self.sq_err += other.sq_err;
    }
    pub fn loss(&self) -> f64 {
        self.loss_sum / self.n.max(1) as f64
    }
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.n.max(1) as f64
    }
    pub fn mae(&self) -> f64 {
        self.abs_err / self.n.max(1) as f64
    }
    pub fn mse(&self) -> f64 {
        self.sq_err / self.n.max(1) as f64
    }
}

/// What a loss takes: cross-entropies the logits (a final softmax or sigmoid folded in),
/// regression losses the model's outputs (a final activation applied).
pub(super) fn outputs_for_loss(loss: Loss, (z, held): (Tensor<2>, Activation)) -> Tensor<2> {
    if loss.is_classification() {
        z
    } else {
        activate(held, z)
    }
}

/// The loss of a batch (mean) from the model's logits or outputs, and its metrics.
pub(super) fn loss_and_metrics(loss: Loss, z: Tensor<2>, y: &Targets, device: &Device) -> (Tensor<1>, FitMetrics) {
    let n = z.dims()[0];
    let read = z.clone().detach().into_data().try_to_vec::<f32>().unwrap_or_default();
    let mut m = FitMetrics { n, ..Default::default() };
    let out = match (loss, y) {
        (Loss::SparseCategoricalCrossentropy, Targets::Classes(c)) => {
            let k = z.dims()[1];
            m.correct = read.chunks(k).zip(c).filter(|(row, &l)| crate::argmax(row).0 as i64 == l).count();
            let t = Tensor::<1, Int>::from_data(TensorData::new(c.clone(), [n]), device);
            CrossEntropyLossConfig::new().init(device).forward(z, t)
        }
        (Loss::BinaryCrossentropy, Targets::Classes(c)) => {
            m.correct = read.iter().zip(c).filter(|(z, &l)| (**z > 0.0) as i64 == l).count();
            let t = Tensor::<2>::from_data(TensorData::new(c.iter().map(|&l| l as f32).collect::<Vec<_>>(), [n, 1]), device);
            // max(z, 0) - z y + log(1 + exp(-|z|)), the stable form of Keras' from_logits loss.
            (relu(z.clone()) - z.clone() * t + z.abs().neg().exp().log1p()).mean()
        }
        (_, Targets::Values(v)) => {
            for (p, t) in read.iter().zip(v) {
                let d = (*p - *t) as f64;
                m.abs_err += d.abs();
                m.sq_err += d * d;
            }
            let t = Tensor::<2>::from_data(TensorData::new(v.clone(), [n, 1]), device);
            let d = z - t;
            match loss {
                Loss::MeanAbsoluteError => d.abs().mean(),
                Loss::Huber { delta } => {
                    let a = d.abs();
                    let q = a.clone().clamp_max(delta);
                    (q.clone().square().mul_scalar(0.5) + (a - q).mul_scalar(delta)).mean()
                }
                _ => d.square().mean(),
            }
        }
        (l, _) => panic!("loss {l:?} does not match the targets"),
    };
    (out, m)
}

/// Where a trainer's optimizer state goes in a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OptimizerState {
    /// burn's optimizer record (one thread).
    Burn,
    /// The fused strategy's blocks and written-out head, in their own file.
    Fused,
    /// A fused strategy with a head run through burn's graph: not kept (a resume starts Adam
    /// afresh, and says so).
    NotKept,
}

/// Per-step progress.
#[derive(Debug, Clone, Copy)]
pub struct FitProgress {
    pub epoch: usize,
    pub step: usize,
    pub steps: usize,
    pub metrics: FitMetrics,
}

/// An epoch's end.
#[derive(Debug, Clone, Copy)]
pub struct FitEpoch {
    pub epoch: usize,
    pub metrics: FitMetrics,
    pub elapsed: Duration,
}

/// How a [`SeqTrainer`] runs its steps.
enum Engine {
    /// The whole model on the caller's thread, with its optimizer.
    Whole { net: Option<Net>, optim: ModuleOptimizer },
    /// The first layer in column blocks over several threads (`fused.rs`).
    Fused(Box<Fused>),
}

/// Trains a Sequential model. It picks its execution strategy when it is made: the fused
/// two-core strategy (`fused.rs`) when the first layer is `Dense(relu)`, the optimizer Adam,
/// the device the CPU and [`FitSettings::threads`] is not 1; the whole model on one thread
/// otherwise. Both compute the same function and the same gradients.
pub struct SeqTrainer {
    pub spec: SequentialSpec,
    pub settings: FitSettings,
    pub loss: Loss,
    engine: Engine,
    device: Device,
    pub epochs_done: usize,
}

impl SeqTrainer {
    /// A fresh model on `device`, its weights drawn from `settings.seed`.
    pub fn new(spec: SequentialSpec, loss: Loss, settings: FitSettings, device: &Device) -> Result<Self, ModelError> {
        let out = spec.outputs();
        match loss {
            Loss::BinaryCrossentropy if out != 1 => return Err(ModelError::Input(format!("binary_crossentropy needs 1 output unit, the model has {out}"))),
            Loss::MeanSquaredError | Loss::MeanAbsoluteError | Loss::Huber { .. } if out != 1 => {
                return Err(ModelError::Input(format!("a regression loss needs 1 output unit, the model has {out}")))
            }
            _ => {}
        }
        if settings.batch_size == 0 || settings.optimizer().learning_rate() <= 0.0 {
            return Err(ModelError::Input("batch size and learning rate must be positive".into()));
        }
        spec.shapes()?;
        let device = device.clone().autodiff();
        static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _init = INIT.lock().unwrap_or_else(|e| e.into_inner());
        device.seed(settings.seed);
        let net = spec.init(&device)?;
        drop(_init);
        let engine = Self::engine(&spec, &settings, loss, net, &device);
        Ok(SeqTrainer { spec, settings, loss, engine, device, epochs_done: 0 })
    }

    fn engine(spec: &SequentialSpec, settings: &FitSettings, loss: Loss, net: Net, device: &Device) -> Engine {
        match fused::plan(spec, settings, device) {
            Some(parts) => Engine::Fused(Box::new(Fused::new(spec, net, settings.optimizer(), loss, parts, device))),
            None => Engine::Whole { net: Some(net), optim: ModuleOptimizer::from(KerasOptimizer(settings.optimizer())) },
        }
    }

    /// Whether this trainer runs the fused strategy (for reports and tests).
    pub fn is_fused(&self) -> bool {
        matches!(self.engine, Engine::Fused(_))
    }

    /// One step on the examples at `idx`.
    pub fn step(&mut self, data: &Data, idx: &[usize]) -> FitMetrics {
        self.step_ahead(data, idx, None)
    }

    /// [`step`](Self::step); the fused strategy gathers the batch at `next` meanwhile.
    fn step_ahead(&mut self, data: &Data, idx: &[usize], next: Option<&[usize]>) -> FitMetrics {
        let lr = self.settings.optimizer().learning_rate();
        let (net, optim) = match &mut self.engine {
            Engine::Fused(f) => return f.step(self.loss, lr, data, idx, next),
            Engine::Whole { net, optim } => (net, optim),
        };
        let (x, y) = data.gather(idx);
        let x = Tensor::<2>::from_data(TensorData::new(x, [idx.len(), data.width]), &self.device);
        let model = net.take().expect("model present between steps");
        let z = outputs_for_loss(self.loss, model.forward_logits(&self.spec, x));
        let (loss, mut m) = loss_and_metrics(self.loss, z, &y, &self.device);
        let grads = loss.backward();
        m.loss_sum = loss.into_scalar::<f32>() as f64 * idx.len() as f64;
        let grads = GradientsParams::from_grads(grads, &model);
        *net = Some(optim.step(lr, model, grads));
        m
    }

    /// One epoch, shuffled with the seed and the epoch number.
    pub fn fit_epoch(&mut self, data: &Data, mut on_step: impl FnMut(&FitProgress)) -> FitEpoch {
        let start = Instant::now();
        let mut order: Vec<usize> = (0..data.len()).collect();
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(self.settings.seed.wrapping_add(self.epochs_done as u64)));
        let steps = order.len().div_ceil(self.settings.batch_size);
        let mut total = FitMetrics::default();
        let chunks: Vec<&[usize]> = order.chunks(self.settings.batch_size).collect();
        for (step, &chunk) in chunks.iter().enumerate() {
            total.add(&self.step_ahead(data, chunk, chunks.get(step + 1).copied()));
            on_step(&FitProgress { epoch: self.epochs_done + 1, step: step + 1, steps, metrics: total });
        }
        self.epochs_done += 1;
        FitEpoch { epoch: self.epochs_done, metrics: total, elapsed: start.elapsed() }
    }

    /// Replaces the weights with a saved record (a checkpoint's `model.bpk`).
    pub(crate) fn load_record(&mut self, record: burn::store::ModuleRecord) -> Result<(), String> {
        let net = self.net().try_load_record(record).map_err(|e| e.to_string())?;
        self.engine = Self::engine(&self.spec, &self.settings, self.loss, net, &self.device);
        Ok(())
    }

    /// How this trainer's optimizer state is kept in a checkpoint.
    pub(crate) fn optimizer_state(&self) -> OptimizerState {
        match &self.engine {
            Engine::Whole { .. } => OptimizerState::Burn,
            Engine::Fused(f) if f.saves_state() => OptimizerState::Fused,
            Engine::Fused(_) => OptimizerState::NotKept,
        }
    }

    /// Writes the optimizer's state (Adam's step count and moments) to `path`, in the form
    /// [`SeqTrainer::optimizer_state`] names: burn's record (keyed by the weights' parameter
    /// ids, which the weights' record keeps), or the fused blocks' own file.
    pub(crate) fn save_optimizer(&self, path: &std::path::Path) -> Result<(), String> {
        match &self.engine {
            Engine::Whole { optim, .. } => optim.save(path).map(|_| ()).map_err(|e| e.to_string()),
            Engine::Fused(f) => f.save_state(path).map_err(|e| e.to_string()),
        }
    }

    /// Reads the optimizer's state saved by [`SeqTrainer::save_optimizer`]; on an error the
    /// optimizer's state is as it was.
    pub(crate) fn load_optimizer(&mut self, path: &std::path::Path) -> Result<(), String> {
        let fresh = ModuleOptimizer::from(KerasOptimizer(self.settings.optimizer()));
        match &mut self.engine {
            Engine::Whole { optim, .. } => {
                let saved = std::mem::replace(optim, fresh);
                *optim = saved.load(path).map_err(|e| e.to_string())?;
                Ok(())
            }
            Engine::Fused(f) => f.load_state(path),
        }
    }

    /// An inference copy of the current weights.
    pub fn predictor(&self) -> SeqPredictor {
        SeqPredictor { spec: self.spec.clone(), loss: self.loss, net: self.net().valid() }
    }

    /// The mean loss on `data` and the gradient of each parameter (kernels and biases of the
    /// Dense layers in order: kernel 0, bias 0, kernel 1, ...), row-major (for gradient checks).
    pub fn loss_and_gradients(&self, data: &Data) -> (f64, Vec<Vec<f32>>) {
        let idx: Vec<usize> = (0..data.len()).collect();
        let (x, y) = data.gather(&idx);
        let x = Tensor::<2>::from_data(TensorData::new(x, [idx.len(), data.width]), &self.device);
        let net = self.net();
        let z = outputs_for_loss(self.loss, net.forward_logits(&self.spec, x));
        let (loss, _) = loss_and_metrics(self.loss, z, &y, &self.device);
        let grads = loss.backward();
        let mut out = Vec::new();
        for l in &net.dense {
            let g = |t: Tensor<2>| t.grad(&grads).map(|g| g.into_data().try_to_vec::<f32>().unwrap_or_default()).unwrap_or_default();
            out.push(g(l.weight.val()));
            if let Some(b) = &l.bias {
                out.push(b.val().grad(&grads).map(|g| g.into_data().try_to_vec::<f32>().unwrap_or_default()).unwrap_or_default());
            }
        }
        (loss.into_scalar::<f32>() as f64, out)
    }

    /// The mean loss on `data` with element `index` of parameter `param` (numbered as in
    /// [`loss_and_gradients`](Self::loss_and_gradients)) moved by `delta`.
    pub fn loss_with(&self, data: &Data, param: usize, index: usize, delta: f32) -> f64 {
        let mut net = self.net().valid();
        let device = net.dense[0].weight.val().device();
        let mut k = 0;
        for l in &mut net.dense {
            for is_bias in [false, true] {
                let t: Tensor<2> = match (is_bias, &l.bias) {
                    (false, _) => l.weight.val(),
                    (true, Some(b)) => b.val().unsqueeze_dim(0),
                    (true, None) => continue,
                };
                if k == param {
                    let dims = t.dims();
                    let mut v = t.into_data().try_to_vec::<f32>().unwrap_or_default();
                    v[index] += delta;
                    if is_bias {
                        l.bias = Some(burn::module::Param::from_tensor(Tensor::<1>::from_data(TensorData::new(v, [dims[1]]), &device)));
                    } else {
                        l.weight = burn::module::Param::from_tensor(Tensor::<2>::from_data(TensorData::new(v, dims), &device));
                    }
                }
                k += 1;
            }
        }
        let idx: Vec<usize> = (0..data.len()).collect();
        let (x, y) = data.gather(&idx);
        let x = Tensor::<2>::from_data(TensorData::new(x, [idx.len(), data.width]), &device);
        let z = outputs_for_loss(self.loss, net.forward_logits(&self.spec, x));
        loss_and_metrics(self.loss, z, &y, &device).0.into_scalar::<f32>() as f64
    }

    /// The Dense layers' parameters in order (kernel 0 `[in, out]` row-major, bias 0, kernel 1,
    /// ...), numbered as in [`loss_and_gradients`](Self::loss_and_gradients).
    pub fn parameters(&self) -> Vec<Vec<f32>> {
        let v = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap_or_default();
        let mut out = Vec::new();
        for l in self.net().dense {
            out.push(v(l.weight.val()));
            if let Some(b) = &l.bias {
                out.push(v(b.val().unsqueeze_dim(0)));
            }
        }
        out
    }

    /// The model in its current state (the fused strategy's blocks joined).
    pub(crate) fn net(&self) -> Net {
        match &self.engine {
            Engine::Whole { net, .. } => net.as_ref().expect("model present").clone(),
            Engine::Fused(f) => f.net(),
        }
    }
}

/// Evaluation and prediction without autodiff.
#[derive(Debug, Clone)]
pub struct SeqPredictor {
    pub spec: SequentialSpec,
    pub loss: Loss,
    pub net: Net,
}

impl SeqPredictor {
    fn device(&self) -> Device {
        self.net.dense[0].weight.val().device()
    }

    /// Keras' `evaluate` over `data` in batches.
    pub fn evaluate(&self, data: &Data, batch_size: usize) -> FitMetrics {
        let mut total = FitMetrics::default();
        let idx: Vec<usize> = (0..data.len()).collect();
        for chunk in idx.chunks(batch_size.max(1)) {
            let (x, y) = data.gather(chunk);
            let x = Tensor::<2>::from_data(TensorData::new(x, [chunk.len(), data.width]), &self.device());
            let z = outputs_for_loss(self.loss, self.net.forward_logits(&self.spec, x));
            let (loss, mut m) = loss_and_metrics(self.loss, z, &y, &self.device());
            m.loss_sum = loss.into_scalar::<f32>() as f64 * chunk.len() as f64;
            total.add(&m);
        }
        total
    }

    /// One output row per example: class probabilities (a binary model's `[1 - p, p]`), or
    /// the value.
    pub fn predict(&self, x: &[f32], width: usize) -> Result<Vec<Vec<f32>>, ModelError> {
        if width != self.spec.inputs || x.is_empty() || !x.len().is_multiple_of(width) {
            return Err(ModelError::Input(format!("{} values for a model of {} inputs", x.len(), self.spec.inputs)));
        }
        let n = x.len() / width;
        let t = Tensor::<2>::from_data(TensorData::new(x.to_vec(), [n, width]), &self.device());
        let (z, held) = self.net.forward_logits(&self.spec, t);
        let out = match (self.loss, held) {
            (Loss::SparseCategoricalCrossentropy, _) => activate(Activation::Softmax, z),
            (Loss::BinaryCrossentropy, _) => activate(Activation::Sigmoid, z),
            (_, a) => activate(a, z),
        };
        let k = out.dims()[1];
        let v = out.into_data().try_to_vec::<f32>().map_err(|e| ModelError::Input(format!("{e:?}")))?;
        Ok(v.chunks(k).map(|r| if self.loss == Loss::BinaryCrossentropy { vec![1.0 - r[0], r[0]] } else { r.to_vec() }).collect())
    }
}
