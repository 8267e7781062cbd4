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
//! recorded: `dz = dh * (h > 0)`, `db = sum_rows(dz)`, `dW = xᵀ dz`. Its two products are
//! `gemm` calls on the block's own slices (the kernels burn's CPU backend runs for its matmul),
//! and its Adam step is [`FusedAdam::update`] in place: no graph, no tensor, no allocation per
//! step.

use std::sync::mpsc::{channel, Receiver, RecvError, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor, TensorData};

use crate::matmul::{product, Shape};
use crate::FusedAdam;

/// A batch's inputs, `rows x d_in` row-major, read by every block of a step.
pub(crate) type Inputs = Arc<Vec<f32>>;

/// Adam's state of one dense layer (a block, or the written-out head): its step count and the
/// moments of its kernel and bias.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DenseMoments {
    pub time: i32,
    pub m_w: Vec<f32>,
    pub v_w: Vec<f32>,
    pub m_b: Vec<f32>,
    pub v_b: Vec<f32>,
}

impl DenseMoments {
    pub(crate) fn zeros(weights: usize, biases: usize) -> DenseMoments {
        DenseMoments { time: 0, m_w: vec![0.0; weights], v_w: vec![0.0; weights], m_b: vec![0.0; biases], v_b: vec![0.0; biases] }
    }

    /// Whether these moments fit a layer of `weights` and `biases` parameters.
    pub(crate) fn fits(&self, weights: usize, biases: usize) -> bool {
        self.m_w.len() == weights && self.v_w.len() == weights && self.m_b.len() == biases && self.v_b.len() == biases
    }

    /// One Adam step of a dense layer's kernel `w` and bias `b`.
    pub(crate) fn step(&mut self, adam: &FusedAdam, lr: f64, w: &mut [f32], d_w: &[f32], b: &mut [f32], d_b: &[f32]) {
        self.time += 1;
        let lr = lr as f32;
        adam.update(lr, self.time, w, d_w, &mut self.m_w, &mut self.v_w);
        adam.update(lr, self.time, b, d_b, &mut self.m_b, &mut self.v_b);
    }
}

/// One column block of the hidden layer, with its own optimizer state.
pub(crate) struct Block {
    d_in: usize,
    cols: usize,
    /// The kernel, `d_in x cols` row-major (burn's `Linear` layout), and the bias.
    w: Vec<f32>,
    b: Vec<f32>,
    adam: FusedAdam,
    moments: DenseMoments,
    /// Gradients, kept between steps to reuse their memory.
    d_w: Vec<f32>,
    d_b: Vec<f32>,
    /// The inputs and activations of the last forward pass.
    x: Option<Inputs>,
    h: Vec<f32>,
    device: Device,
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32 tensor")
}

impl Block {
    /// A block holding `layer` (which must have a bias), with fresh Adam state.
    pub(crate) fn new(layer: Linear, adam: FusedAdam) -> Self {
        let weight = layer.weight.val();
        let device = weight.device();
        let [d_in, cols] = weight.dims();
        let b = layer.bias.map(|b| values(b.val())).unwrap_or_else(|| vec![0.0; cols]);
        let w = values(weight);
        Block {
            d_in,
            cols,
            moments: DenseMoments::zeros(w.len(), cols),
            d_w: vec![0.0; w.len()],
            d_b: vec![0.0; cols],
            w,
            b,
            adam,
            x: None,
            h: Vec::new(),
            device,
        }
    }

    pub(crate) fn moments(&self) -> DenseMoments {
        self.moments.clone()
    }

    /// The layer's inputs.
    pub(crate) fn d_in(&self) -> usize {
        self.d_in
    }

    /// Takes saved moments; `false` (and nothing changed) when they are another layer's.
    pub(crate) fn set_moments(&mut self, m: DenseMoments) -> bool {
        let fits = m.fits(self.w.len(), self.cols);
        if fits {
            self.moments = m;
        }
        fits
    }

    /// The block as a burn layer (fresh parameters with its current values).
    pub(crate) fn layer(&self) -> Linear {
        let weight = Tensor::<2>::from_data(TensorData::new(self.w.clone(), [self.d_in, self.cols]), &self.device);
        let bias = Tensor::<1>::from_data(TensorData::new(self.b.clone(), [self.cols]), &self.device);
        Linear { weight: Param::from_tensor(weight), bias: Some(Param::from_tensor(bias)) }
    }

    /// relu(x W + b) for this block's columns, `rows x cols` row-major.
    pub(crate) fn forward(&mut self, x: &Inputs) -> Vec<f32> {
        let rows = x.len() / self.d_in;
        let (d_in, cols) = (self.d_in, self.cols);
        self.h.clear();
        for _ in 0..rows {
            self.h.extend_from_slice(&self.b);
        }
        product(&mut self.h, Shape::rows(rows, cols), true, x, Shape::rows(rows, d_in), &self.w, Shape::rows(d_in, cols));
        for v in &mut self.h {
            *v = v.max(0.0);
        }
        self.x = Some(x.clone());
        self.h.clone()
    }

    /// Back-propagates `dh` (dLoss/dActivations, `rows x cols`) and takes one Adam step.
    pub(crate) fn backward(&mut self, dh: &[f32], lr: f64) {
        let x = self.x.take().expect("forward before backward");
        let (d_in, cols) = (self.d_in, self.cols);
        let rows = x.len() / d_in;
        assert_eq!(dh.len(), rows * cols, "activation gradient of the batch's shape");
        // dz = dh where the unit was active (relu' is 0 at 0, as burn's), into h's memory.
        for (h, &g) in self.h.iter_mut().zip(dh) {
            *h = if *h > 0.0 { g } else { 0.0 };
        }
        self.d_b.fill(0.0);
        for row in self.h.chunks_exact(cols) {
            for (d, &z) in self.d_b.iter_mut().zip(row) {
                *d += z;
            }
        }
        // dW = xᵀ dz: xᵀ is x read with its strides swapped.
        product(&mut self.d_w, Shape::rows(d_in, cols), false, &x, Shape::rows(rows, d_in).t(), &self.h, Shape::rows(rows, cols));
        self.moments.step(&self.adam, lr, &mut self.w, &self.d_w, &mut self.b, &self.d_b);
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
