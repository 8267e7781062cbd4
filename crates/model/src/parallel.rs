//! The hidden layer split in column blocks, one per CPU core, each trained on its own thread.
//!
//! `Dense(784→128)` is `[Dense(784→48) ‖ Dense(784→80)]` on two cores (see [`widths`]): the
//! same function, the same gradients. At batch 64 each GEMM (64x784x128) is below the size burn's CPU backend
//! parallelises, so without this training used one core. Splitting by columns rather than by
//! examples keeps each block's kernel, gradient and Adam moments (4 x 150–250 kB) resident in
//! its core's L2 cache for the whole run; only the batch (200 kB), the block's activations (16 kB)
//! and their gradient cross between cores.
//!
//! A step: every block computes its activations from the batch ([`Block::forward`]); the trainer
//! runs the output layer and the loss on the concatenation, which gives each block the gradient
//! of the loss with respect to its activations; each block then back-propagates that through its
//! own autodiff graph and takes its Adam step ([`Block::backward`]).

use std::sync::mpsc::{channel, Receiver, RecvError, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use burn::module::Param;
use burn::nn::Linear;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::activation::relu;
use burn::tensor::Tensor;

use crate::FusedAdam;

/// One column block of the hidden layer, with its own optimizer state.
pub(crate) struct Block {
    layer: Option<Linear>,
    optim: ModuleOptimizer,
    /// The activations of the last forward pass, still attached to their graph.
    activations: Option<Tensor<2>>,
}

impl Block {
    pub(crate) fn new(layer: Linear, adam: FusedAdam) -> Self {
        Block { layer: Some(layer), optim: ModuleOptimizer::from(adam), activations: None }
    }

    pub(crate) fn layer(&self) -> &Linear {
        self.layer.as_ref().expect("block layer present between steps")
    }

    /// relu(x W + b) for this block's columns; returns the values (no autodiff).
    pub(crate) fn forward(&mut self, x: Tensor<2>) -> Tensor<2> {
        let h = relu(self.layer().forward(x));
        self.activations = Some(h.clone());
        h.inner()
    }

    /// Back-propagates `dh` (dLoss/dActivations, no autodiff) and takes one Adam step.
    ///
    /// `sum(h * dh)` has `dh` as its gradient with respect to `h`, so its backward pass gives
    /// this block's parameter gradients of the real loss.
    pub(crate) fn backward(&mut self, dh: Tensor<2>, lr: f64) {
        let h = self.activations.take().expect("forward before backward");
        let grads = (h * Tensor::from_inner(dh)).sum().backward();
        let layer = self.layer.take().expect("block layer present between steps");
        let grads = GradientsParams::from_grads(grads, &layer);
        self.layer = Some(self.optim.step(lr, layer, grads));
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

/// Widths of `parts` column blocks covering `total` columns. The first block, trained on the
/// caller's thread, is three fifths the width of the others, because that thread also prepares
/// the batch and runs the output layer and the loss (48 + 80 columns trained fastest of 64 + 64,
/// 54 + 74 and 48 + 80 on two cores; see BENCHMARKS.md). The others share the rest evenly.
pub(crate) fn widths(total: usize, parts: usize) -> Vec<usize> {
    let parts = parts.clamp(1, total.max(1));
    if parts == 1 {
        return vec![total];
    }
    let first = (total * 3 / (3 + 5 * (parts - 1))).max(1);
    let rest = total - first;
    let others = parts - 1;
    std::iter::once(first).chain((0..others).map(|i| rest / others + usize::from(i < rest % others))).collect()
}

enum Job {
    Forward(Tensor<2>),
    Backward(Tensor<2>, f64),
    Layer(Sender<Linear>),
}

/// A block on its own thread. Jobs run in the order sent, so a forward pass sent after a
/// backward pass sees the updated weights.
pub(crate) struct Worker {
    jobs: Option<Sender<Job>>,
    activations: Receiver<Tensor<2>>,
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
                            if act_tx.send(block.forward(x)).is_err() {
                                return;
                            }
                        }
                        Job::Backward(dh, lr) => block.backward(dh, lr),
                        Job::Layer(reply) => {
                            let _ = reply.send(block.layer().clone());
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

    pub(crate) fn start_forward(&self, x: Tensor<2>) {
        self.send(Job::Forward(x));
    }

    pub(crate) fn finish_forward(&self) -> Tensor<2> {
        recv_spinning(&self.activations).expect(GONE)
    }

    pub(crate) fn start_backward(&self, dh: Tensor<2>, lr: f64) {
        self.send(Job::Backward(dh, lr));
    }

    /// The block's layer once the jobs sent before have run.
    pub(crate) fn layer(&self) -> Linear {
        let (tx, rx) = channel();
        self.send(Job::Layer(tx));
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
        assert_eq!(widths(128, 2), vec![48, 80]);
        assert_eq!(widths(128, 3), vec![29, 50, 49]);
        assert_eq!(widths(10, 3), vec![2, 4, 4]);
        assert_eq!(widths(4, 8), vec![1, 1, 1, 1]);
        assert_eq!(widths(128, 0), vec![128]);
        for (t, p) in [(128, 2), (128, 5), (10, 3), (3, 2)] {
            assert_eq!(widths(t, p).iter().sum::<usize>(), t);
        }
    }

    #[test]
    fn split_then_join_is_the_same_layer() {
        let device = crate::default_device();
        let spec = crate::sequential::SequentialSpec::dense(6, &[5], 2);
        let layer = spec.init(&device).unwrap().dense.remove(0);
        let parts = split_columns(&layer, &widths(5, 2));
        assert_eq!(parts[0].weight.val().dims(), [6, 1]);
        assert_eq!(parts[1].weight.val().dims(), [6, 4]);
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
