//! The fused two-core strategy of [`SeqTrainer`](super::SeqTrainer): a model whose first layer
//! is `Dense(relu)` on a flat input, trained with Adam on the CPU, has that layer split in
//! column blocks, one per thread (`crate::parallel`), while the caller's thread runs the rest
//! of the network (the head) and the loss. The blog's `Dense(128, relu) → Dense(10)` is the
//! case it was built for (BENCHMARKS.md, "Training"); any head works, since the head is the
//! same Sequential model without its first layer.
//!
//! A step: every block computes its activations from the batch; the head runs on their
//! concatenation, which gives the gradient of the loss with respect to them; each block
//! back-propagates its columns of it through its layer (written out, `crate::parallel`) and
//! takes its Adam step; the head takes its own. A head of one output layer with
//! cross-entropy or squared error is written out too (`fused_head`); any other runs through
//! burn's graph, the activations a leaf of it. Same function, same gradients as one thread
//! (tested in `tests/fused.rs`).

use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};

use super::data::{Data, Targets};
use super::fit::{loss_and_metrics, outputs_for_loss, FitMetrics, FitSettings, Loss};
use super::fused_head::DenseHead;
use super::fused_state;
use super::net::Net;
use super::optim::{KerasOptimizer, OptimizerSpec};
use super::spec::{Activation, Layer, SequentialSpec};
use crate::parallel::{join_columns, split_columns, widths, Block, Inputs, Worker};
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

/// A batch gathered ahead: its indices, the inputs and the targets.
struct Batch {
    idx: Vec<usize>,
    x: Inputs,
    y: Targets,
}

pub(crate) struct Fused {
    /// The first block, stepped on the caller's thread.
    local: Block,
    /// The other blocks, one worker thread each.
    workers: Vec<Worker>,
    /// Each block's width, the local block's first.
    widths: Vec<usize>,
    /// The model without its first layer.
    head_spec: SequentialSpec,
    head: Option<Net>,
    head_optim: ModuleOptimizer,
    /// The head written out, when it is one output layer of a loss `fused_head` computes;
    /// then `head`'s layer is stale until [`Fused::net`] puts this one's in.
    dense_head: Option<DenseHead>,
    device: Device,
    prepared: Option<Batch>,
}

impl Fused {
    /// Splits `net` (on an autodiff CPU device) into `parts` blocks and the head.
    pub(crate) fn new(spec: &SequentialSpec, mut net: Net, optimizer: OptimizerSpec, loss: Loss, parts: usize, device: &Device) -> Fused {
        let adam = match optimizer {
            OptimizerSpec::Adam { beta_1, beta_2, epsilon, .. } => FusedAdam { beta_1, beta_2, epsilon },
            _ => FusedAdam::default(),
        };
        let first = net.dense.remove(0);
        let units = first.weight.val().dims()[1];
        let widths = widths(units, parts);
        let mut blocks = split_columns(&first, &widths).into_iter().map(|l| Block::new(l, adam));
        let local = blocks.next().expect("at least one block");
        let workers = blocks.enumerate().map(|(i, b)| Worker::spawn(b, format!("train-block-{}", i + 1))).collect();
        let head_spec = SequentialSpec { inputs: units, input_shape: None, layers: spec.layers[1..].to_vec() };
        let dense_head = DenseHead::fits(&head_spec, loss).then(|| DenseHead::new(&net.dense[0], loss, adam));
        Fused {
            local,
            workers,
            widths,
            head_spec,
            head: Some(net),
            head_optim: ModuleOptimizer::from(KerasOptimizer(optimizer)),
            dense_head,
            device: device.clone(),
            prepared: None,
        }
    }

    fn head(&self) -> &Net {
        self.head.as_ref().expect("head present between steps")
    }

    /// The whole network in its current state (the blocks joined into one layer).
    pub(crate) fn net(&self) -> Net {
        let mut blocks = vec![self.local.layer()];
        blocks.extend(self.workers.iter().map(Worker::layer));
        let mut net = self.head().clone();
        if let Some(d) = &self.dense_head {
            net.dense[0] = d.layer.linear();
        }
        net.dense.insert(0, join_columns(&blocks));
        net
    }

    /// Whether the optimizer's state can be saved and read back: the head is written out (a
    /// head run through burn's graph keeps burn's state, keyed by its parameters, which is not
    /// kept).
    pub(crate) fn saves_state(&self) -> bool {
        self.dense_head.is_some()
    }

    /// Writes every block's and the head's Adam state to `path` ([`fused_state`]'s format).
    pub(crate) fn save_state(&self, path: &std::path::Path) -> std::io::Result<()> {
        let head = self.dense_head.as_ref().ok_or_else(|| std::io::Error::other("a head run through burn's graph keeps no state file"))?;
        let mut layers = vec![self.local.moments()];
        layers.extend(self.workers.iter().map(Worker::moments));
        layers.push(head.layer.moments().clone());
        fused_state::write(path, &layers)
    }

    /// Reads the state [`Fused::save_state`] wrote, for the same blocks and head; nothing
    /// changes when it does not fit them.
    pub(crate) fn load_state(&mut self, path: &std::path::Path) -> Result<(), String> {
        let mut layers = fused_state::read(path)?;
        let Some(head) = self.dense_head.as_mut() else { return Err("a head run through burn's graph keeps no state file".into()) };
        let d_in = self.local.d_in();
        let fits = layers.len() == self.widths.len() + 1
            && layers.iter().zip(&self.widths).all(|(l, &w)| l.fits(d_in * w, w))
            && layers.last().is_some_and(|l| l.fits(head.layer.d_in * head.layer.units, head.layer.units));
        if !fits {
            let sizes: Vec<usize> = layers.iter().map(|l| l.m_b.len()).collect();
            return Err(format!("saved for layers of {sizes:?} units; these blocks and head have {:?} and {}", self.widths, self.head_spec.outputs()));
        }
        head.layer.set_moments(layers.pop().expect("checked above"));
        let mut layers = layers.into_iter();
        self.local.set_moments(layers.next().expect("checked above"));
        for (w, l) in self.workers.iter().zip(layers) {
            w.set_moments(l);
        }
        Ok(())
    }

    fn units(&self) -> usize {
        self.widths.iter().sum()
    }

    /// The blocks' activations (each `rows x width`) side by side: `rows x units`.
    fn join_rows(&self, parts: &[Vec<f32>], rows: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(rows * self.units());
        for r in 0..rows {
            for (p, &w) in parts.iter().zip(&self.widths) {
                out.extend_from_slice(&p[r * w..(r + 1) * w]);
            }
        }
        out
    }

    /// `rows x units` split back into each block's columns.
    fn split_rows(&self, all: &[f32], rows: usize) -> Vec<Vec<f32>> {
        let units = self.units();
        let mut start = 0;
        self.widths
            .iter()
            .map(|&w| {
                let cols = start..start + w;
                start += w;
                (0..rows).flat_map(|r| &all[r * units + cols.start..r * units + cols.end]).copied().collect()
            })
            .collect()
    }

    fn batch(&self, data: &Data, idx: &[usize]) -> Batch {
        let (x, y) = data.gather(idx);
        Batch { idx: idx.to_vec(), x: Inputs::new(x), y }
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
        let mut parts = vec![self.local.forward(&batch.x)];
        if let Some(next) = next {
            self.prepared = Some(self.batch(data, next));
        }
        parts.extend(self.workers.iter().map(Worker::finish_forward));
        let rows = idx.len();
        let hidden = self.join_rows(&parts, rows);
        let (m, dh) = match &mut self.dense_head {
            Some(d) => d.step(&hidden, &batch.y, lr),
            None => self.graph_head(loss, lr, hidden, &batch.y),
        };
        let mut dh = self.split_rows(&dh, rows).into_iter();
        let local_dh = dh.next().expect("at least one block");
        for (w, g) in self.workers.iter().zip(dh) {
            w.start_backward(g, lr);
        }
        self.local.backward(&local_dh, lr);
        m
    }

    /// The head through burn's graph, for any head: the batch's metrics and dLoss/dhidden,
    /// after the head's optimizer step.
    fn graph_head(&mut self, loss: Loss, lr: f64, hidden: Vec<f32>, y: &Targets) -> (FitMetrics, Vec<f32>) {
        let rows = hidden.len() / self.units();
        let hidden = Tensor::<2>::from_data(TensorData::new(hidden, [rows, self.units()]), &self.device).require_grad();
        let head = self.head.take().expect("head present between steps");
        let z = outputs_for_loss(loss, head.forward_logits(&self.head_spec, hidden.clone()));
        let (value, mut m) = loss_and_metrics(loss, z, y, &self.device);
        let grads = value.backward();
        m.loss_sum = value.into_scalar::<f32>() as f64 * rows as f64;
        let dh = hidden.grad(&grads).expect("activation gradient").into_data().try_into_vec::<f32>().expect("f32 gradient");
        let grads = GradientsParams::from_grads(grads, &head);
        self.head = Some(self.head_optim.step(lr, head, grads));
        (m, dh)
    }
}
