//! The hidden layer split in column blocks, one per CPU core, each trained on its own thread.
//!
//! `Dense(784→128)` is `[Dense(784→64) ‖ Dense(784→64)]` on two cores (see [`widths`]): the
//! same function, the same gradients. At batch 64 each GEMM (64x784x128) is below the size burn's CPU backend
//! parallelises, so without this training used one core. Splitting by columns rather than by
//! examples keeps each block's kernel, gradient and Adam moments (4 x 150–250 kB) resident in
//! its core's L2 cache for the whole run; only the batch (200 kB), the block's activations (16 kB)
//! and their gradient cross between cores.
//!
//! A step: every block computes its activations from the batch ([`Block::forward`]); the trainer
//! runs the output layer and the loss on the concatenation, which gives each block the gradient
//! of the loss with respect to its activations; each block then back-propagates that through
//! its layer and takes its Adam step ([`Block::backward`]).
//!
//! A block is one `Dense(relu)` with its bias, so its backward pass is written out rather than
//! recorded: `dz = dh * (h > 0)`, then the dense layer's `db = sum_rows(dz)`, `dW = xᵀ dz` and
//! Adam step in place (`crate::dense`): no graph, no tensor, no allocation per step.

use std::sync::mpsc::{channel, Receiver, RecvError, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::Tensor;

use crate::dense::{DenseLayer, DenseMoments};
use crate::FusedAdam;

/// A batch's inputs, `rows x d_in` row-major, read by every block of a step.
pub(crate) type Inputs = Arc<Vec<f32>>;

/// One column block of the hidden layer (a `Dense(relu)`), with its own optimizer state.
pub(crate) struct Block {
    layer: DenseLayer,
    /// The inputs and activations of the last forward pass.
    x: Option<Inputs>,
    h: Vec<f32>,
}

impl Block {
    /// A block holding `layer` (which must have a bias), with fresh Adam state.
    pub(crate) fn new(layer: Linear, adam: FusedAdam) -> Self {
        Block { layer: DenseLayer::new(&layer, adam), x: None, h: Vec::new() }
    }

    pub(crate) fn moments(&self) -> DenseMoments {
        self.layer.moments().clone()
    }

    /// The layer's inputs.
    pub(crate) fn d_in(&self) -> usize {
        self.layer.d_in
    }

    /// Takes saved moments; `false` (and nothing changed) when they are another layer's.
    pub(crate) fn set_moments(&mut self, m: DenseMoments) -> bool {
        self.layer.set_moments(m)
    }

    /// The block as a burn layer (fresh parameters with its current values).
    pub(crate) fn layer(&self) -> Linear {
        self.layer.linear()
    }

    /// relu(x W + b) for this block's columns, `rows x cols` row-major.
    pub(crate) fn forward(&mut self, x: &Inputs) -> Vec<f32> {
        self.layer.forward(x, &mut self.h);
        for v in &mut self.h {
            *v = v.max(0.0);
        }
        self.x = Some(x.clone());
        self.h.clone()
    }

    /// Back-propagates `dh` (dLoss/dActivations, `rows x cols`) and takes one Adam step.
    pub(crate) fn backward(&mut self, dh: &[f32], lr: f64) {
        let x = self.x.take().expect("forward before backward");
        assert_eq!(dh.len(), self.h.len(), "activation gradient of the batch's shape");
        // dz = dh where the unit was active (relu' is 0 at 0, as burn's), into h's memory.
        for (h, &g) in self.h.iter_mut().zip(dh) {
            *h = if *h > 0.0 { g } else { 0.0 };
        }
        self.layer.step(&x, &self.h, lr);
    }
}

/// Splits a `[d_in, d_out]` dense layer into column blocks of the given widths.
pub(crate) fn split_columns(layer: &Linear, widths: &[usize]) -> Vec<Linear> {
    let w = layer.weight.val().inner();
    let b = layer.bias.as_ref().map(|b| b.val().inner());
    let [d_in, _] = w.dims();
    let mut start = 0;
    widths
        .iter()
        .map(|&n| {
            let cols = start..start + n;
            start += n;
            let weight = Param::from_tensor(Tensor::from_inner(w.clone().slice([0..d_in, cols.clone()])));
            let bias = b.as_ref().map(|b| Param::from_tensor(Tensor::from_inner(b.clone().slice([cols]))));
            Linear { weight, bias }
        })
        .collect()
}

/// Joins column blocks back into one dense layer (fresh parameters with the same values).
pub(crate) fn join_columns(blocks: &[Linear]) -> Linear {
    let weight = Tensor::cat(blocks.iter().map(|l| l.weight.val().inner()).collect(), 1);
    let bias = blocks.iter().map(|l| l.bias.as_ref().map(|b| b.val().inner())).collect::<Option<Vec<_>>>().map(|b| Tensor::cat(b, 0));
    Linear { weight: Param::from_tensor(Tensor::from_inner(weight)), bias: bias.map(|b| Param::from_tensor(Tensor::from_inner(b))) }
}

/// Widths of `parts` column blocks covering `total` columns: as even as whole multiples of 16
/// columns allow (one AVX-512 register of f32 across; a block of 56 or 72 columns leaves the
/// GEMM kernels half a register idle and measured 1.5x slower than 64 + 64), the extra 16s to
/// the worker threads' blocks, since the caller's thread also gathers the batch and runs the head.
/// Layers narrower than 16 columns a block are split evenly.
pub(crate) fn widths(total: usize, parts: usize) -> Vec<usize> {
    let parts = parts.clamp(1, total.max(1));
    let even = total / parts;
    let unit = if even >= 16 { 16 } else { 1 };
    let mut w = vec![even / unit * unit; parts];
    let mut left = total - w.iter().sum::<usize>();
    // Whole units first, to the workers' blocks (the last ones), then what is left to the last.
    for i in (0..parts).rev().cycle().take(parts * 4) {
        if left < unit || (i == 0 && parts > 1 && left < unit * parts) {
            continue;
        }
        w[i] += unit;
        left -= unit;
    }
    w[parts - 1] += left;
    w
}

enum Job {
    Forward(Inputs),
    Backward(Vec<f32>, f64),
    Layer(Sender<Linear>),
    Moments(Sender<DenseMoments>),
    SetMoments(DenseMoments, Sender<bool>),
}

/// A block on its own thread. Jobs run in the order sent, so a forward pass sent after a
/// backward pass sees the updated weights.
pub(crate) struct Worker {
    jobs: Option<Sender<Job>>,
    activations: Receiver<Vec<f32>>,
    thread: Option<JoinHandle<()>>,
}

const GONE: &str = "training worker thread stopped";

/// How long a thread waiting for its next job or result polls before it sleeps. Steps are a few
/// hundred microseconds apart; waking a sleeping (virtual) CPU costs tens of microseconds each
/// time, so between steps of a run both threads poll, and they sleep once training pauses.
const SPIN: Duration = Duration::from_millis(2);

/// `rx.recv()`, polling for up to [`SPIN`] before blocking.
fn recv_spinning<T>(rx: &Receiver<T>) -> Result<T, RecvError> {
    let start = Instant::now();
    loop {
        match rx.try_recv() {
            Ok(v) => return Ok(v),
            Err(TryRecvError::Disconnected) => return Err(RecvError),
            Err(TryRecvError::Empty) if start.elapsed() >= SPIN => return rx.recv(),
            Err(TryRecvError::Empty) => std::hint::spin_loop(),
        }
    }
}

impl Worker {
    pub(crate) fn spawn(mut block: Block, name: String) -> Self {
        let (jobs, job_rx) = channel::<Job>();
        let (act_tx, activations) = channel();
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                while let Ok(job) = recv_spinning(&job_rx) {
                    match job {
                        Job::Forward(x) => {
                            if act_tx.send(block.forward(&x)).is_err() {
                                return;
                            }
                        }
                        Job::Backward(dh, lr) => block.backward(&dh, lr),
                        Job::Layer(reply) => {
                            let _ = reply.send(block.layer());
                        }
                        Job::Moments(reply) => {
                            let _ = reply.send(block.moments());
                        }
                        Job::SetMoments(m, reply) => {
                            let _ = reply.send(block.set_moments(m));
                        }
                    }
                }
            })
            .expect("spawn training worker thread");
        Worker { jobs: Some(jobs), activations, thread: Some(thread) }
    }

    fn send(&self, job: Job) {
        self.jobs.as_ref().expect("worker running").send(job).expect(GONE);
    }

    pub(crate) fn start_forward(&self, x: Inputs) {
        self.send(Job::Forward(x));
    }

    pub(crate) fn finish_forward(&self) -> Vec<f32> {
        recv_spinning(&self.activations).expect(GONE)
    }

    pub(crate) fn start_backward(&self, dh: Vec<f32>, lr: f64) {
        self.send(Job::Backward(dh, lr));
    }

    /// The block's layer once the jobs sent before have run.
    pub(crate) fn layer(&self) -> Linear {
        let (tx, rx) = channel();
        self.send(Job::Layer(tx));
        rx.recv().expect(GONE)
    }

    /// The block's Adam state once the jobs sent before have run.
    pub(crate) fn moments(&self) -> DenseMoments {
        let (tx, rx) = channel();
        self.send(Job::Moments(tx));
        rx.recv().expect(GONE)
    }

    /// Gives the block saved moments; `false` when they do not fit it.
    pub(crate) fn set_moments(&self, m: DenseMoments) -> bool {
        let (tx, rx) = channel();
        self.send(Job::SetMoments(m, tx));
        rx.recv().expect(GONE)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_cover_the_layer() {
        assert_eq!(widths(128, 2), vec![64, 64]);
        assert_eq!(widths(128, 3), vec![32, 48, 48]);
        assert_eq!(widths(100, 2), vec![48, 52]);
        assert_eq!(widths(16, 2), vec![8, 8]);
        assert_eq!(widths(10, 3), vec![3, 3, 4]);
        assert_eq!(widths(4, 8), vec![1, 1, 1, 1]);
        assert_eq!(widths(128, 0), vec![128]);
        for (t, p) in [(128, 2), (128, 5), (10, 3), (3, 2), (512, 7), (33, 2), (1000, 16)] {
            assert_eq!(widths(t, p).iter().sum::<usize>(), t);
        }
    }

    #[test]
    fn split_then_join_is_the_same_layer() {
        let device = crate::default_device();
        let spec = crate::sequential::SequentialSpec::dense(6, &[5], 2);
        let layer = spec.init(&device).unwrap().dense.remove(0);
        let parts = split_columns(&layer, &widths(5, 2));
        assert_eq!(parts[0].weight.val().dims(), [6, 2]);
        assert_eq!(parts[1].weight.val().dims(), [6, 3]);
        let joined = join_columns(&parts);
        let v = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(v(joined.weight.val()), v(layer.weight.val()));
        let x = Tensor::<2>::from_data(burn::tensor::TensorData::new((0..12).map(|i| i as f32 / 7.0).collect::<Vec<_>>(), [2, 6]), &device);
        let whole = v(layer.forward(x.clone()));
        let pieces = v(Tensor::cat(parts.iter().map(|p| p.forward(x.clone())).collect(), 1));
        assert_eq!(whole.len(), pieces.len());
        for (a, b) in whole.iter().zip(&pieces) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }
}
