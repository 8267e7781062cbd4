//! The fused two-core strategy of [`SeqTrainer`](super::SeqTrainer): a model whose first layer
//! is `Dense(relu)` on a flat input, trained with Adam on the CPU, has that layer split in
//! column blocks, one per thread (`crate::parallel`), while the caller's thread runs the rest
//! of the network (the head) and the loss. The blog's `Dense(128, relu) → Dense(10)` is the
//! case it was built for (BENCHMARKS.md, "Training"); any head works, since the head is the
//! same Sequential model without its first layer.
//!
//! A step: every block computes its activations from the batch; the head runs on their
//! concatenation (each block's part a leaf of the head's graph), which gives each block the
//! gradient of the loss with respect to its activations; each block back-propagates that
//! through its own graph and takes its Adam step; the head takes its own optimizer's step.
//! Same function, same gradients as one thread (tested in `tests/fused.rs`).

use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};

use super::fit::{loss_and_metrics, outputs_for_loss, Data, FitMetrics, FitSettings, Loss, Targets};
use super::net::Net;
use super::optim::{KerasOptimizer, OptimizerSpec};
use super::spec::{Activation, Layer, SequentialSpec};
use crate::parallel::{join_columns, split_columns, widths, Block, Worker};
use crate::FusedAdam;

/// The number of column blocks the fused strategy would use for `spec` with `settings` on
/// `device`, or `None` when one thread trains it: the first layer is not `Dense(relu)` with
/// a bias on a flat input, the optimizer is not Adam, the device is not the CPU, or one
/// thread was asked for (`threads` 1; 0 is one per core).
pub(crate) fn plan(spec: &SequentialSpec, settings: &FitSettings, device: &Device) -> Option<usize> {
    let units = match spec.layers.first() {
        Some(Layer::Dense { units, activation: Activation::Relu, use_bias: true, .. }) if spec.input_shape.is_none() && spec.layers.len() >= 2 => *units,
        _ => return None,
    };
    if !matches!(settings.optimizer(), OptimizerSpec::Adam { .. }) || !crate::is_cpu(device) {
        return None;
    }
    let threads = match settings.threads {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        n => n,
    };
    // Blocks narrower than 8 columns cost more in hand-offs than they save.
    let parts = threads.min(units / 8);
    (parts >= 2).then_some(parts)
}

/// A batch gathered ahead: its indices, the inputs on the device and the targets.
struct Batch {
    idx: Vec<usize>,
    x: Tensor<2>,
    y: Targets,
}

pub(crate) struct Fused {
    /// The first block, stepped on the caller's thread.
    local: Block,
    /// The other blocks, one worker thread each.
    workers: Vec<Worker>,
    /// The model without its first layer.
    head_spec: SequentialSpec,
    head: Option<Net>,
    head_optim: ModuleOptimizer,
    device: Device,
    prepared: Option<Batch>,
}

impl Fused {
    /// Splits `net` (on an autodiff CPU device) into `parts` blocks and the head.
    pub(crate) fn new(spec: &SequentialSpec, mut net: Net, optimizer: OptimizerSpec, parts: usize, device: &Device) -> Fused {
        let adam = match optimizer {
            OptimizerSpec::Adam { beta_1, beta_2, epsilon, .. } => FusedAdam { beta_1, beta_2, epsilon },
            _ => FusedAdam::default(),
        };
        let first = net.dense.remove(0);
        let units = first.weight.val().dims()[1];
        let mut blocks = split_columns(&first, &widths(units, parts)).into_iter().map(|l| Block::new(l, adam));
        let local = blocks.next().expect("at least one block");
        let workers = blocks.enumerate().map(|(i, b)| Worker::spawn(b, format!("train-block-{}", i + 1))).collect();
        let head_spec = SequentialSpec { inputs: units, input_shape: None, layers: spec.layers[1..].to_vec() };
        Fused {
            local,
            workers,
            head_spec,
            head: Some(net),
            head_optim: ModuleOptimizer::from(KerasOptimizer(optimizer)),
            device: device.clone(),
            prepared: None,
        }
    }

    fn head(&self) -> &Net {
        self.head.as_ref().expect("head present between steps")
    }

    /// The whole network in its current state (the blocks joined into one layer).
    pub(crate) fn net(&self) -> Net {
        let mut blocks = vec![self.local.layer().clone()];
        blocks.extend(self.workers.iter().map(Worker::layer));
        let mut net = self.head().clone();
        net.dense.insert(0, join_columns(&blocks));
        net
    }

    fn batch(&self, data: &Data, idx: &[usize]) -> Batch {
        let (x, y) = data.gather(idx);
        Batch { idx: idx.to_vec(), x: Tensor::<2>::from_data(TensorData::new(x, [idx.len(), data.width]), &self.device), y }
    }

    /// One step on the examples at `idx`; while the workers run their forward pass, the batch
    /// at `next` is gathered for the following step.
    pub(crate) fn step(&mut self, loss: Loss, lr: f64, data: &Data, idx: &[usize], next: Option<&[usize]>) -> FitMetrics {
        let batch = match self.prepared.take() {
            Some(b) if b.idx == idx => b,
            _ => self.batch(data, idx),
        };
        for w in &self.workers {
            w.start_forward(batch.x.clone());
        }
        let mut hidden = vec![self.local.forward(batch.x)];
        if let Some(next) = next {
            self.prepared = Some(self.batch(data, next));
        }
        hidden.extend(self.workers.iter().map(Worker::finish_forward));
        let leaves: Vec<Tensor<2>> = hidden.into_iter().map(|h| Tensor::from_inner(h).require_grad()).collect();
        let head = self.head.take().expect("head present between steps");
        let z = outputs_for_loss(loss, head.forward_logits(&self.head_spec, Tensor::cat(leaves.clone(), 1)));
        let (value, mut m) = loss_and_metrics(loss, z, &batch.y, &self.device);
        let grads = value.backward();
        m.loss_sum = value.into_scalar::<f32>() as f64 * idx.len() as f64;
        let mut dh = leaves.iter().map(|l| l.grad(&grads).expect("activation gradient"));
        let local_dh = dh.next().expect("at least one block");
        for (w, g) in self.workers.iter().zip(dh) {
            w.start_backward(g, lr);
        }
        self.local.backward(local_dh, lr);
        let grads = GradientsParams::from_grads(grads, &head);
        self.head = Some(self.head_optim.step(lr, head, grads));
        m
    }
}
