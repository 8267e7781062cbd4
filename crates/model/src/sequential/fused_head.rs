//! The fused strategy's head when it is one `Dense` output layer, written out: its forward
//! pass, the loss, the gradients and its Adam step on the caller's thread, without a graph.
//!
//! This is the blog's head (`Dense(10)` logits with sparse categorical cross-entropy), the
//! binary classifier's (`Dense(1, sigmoid)` with binary cross-entropy) and the usual
//! regression head (`Dense(1)` linear with mean squared error). Through burn's autodiff
//! this 64x128x10 layer and its loss took about 95 µs a step, a third of the step, while the
//! worker thread waited for the activation gradient; written out they are a few microseconds.
//! Any other head (deeper, another loss) runs through burn as before ([`super::fused`]).
//!
//! The arithmetic, for a batch of `n` rows, hidden activations `h` (`n x d`), kernel `W`
//! (`d x k`) and bias `b`:
//!
//! ```text
//! z  = h W + b
//! cross-entropy: loss = mean_r(logsumexp(z_r) - z_r[y_r]),  dz = (softmax(z) - onehot(y)) / n
//! binary:        loss = mean_r(max(z,0) - z y + log(1 + e^-|z|)), dz = (sigmoid(z) - y) / n
//! squared error: loss = mean_r((z_r - y_r)^2),              dz = 2 (z - y) / n
//! dW = hᵀ dz,  db = sum_r dz,  dh = dz Wᵀ
//! ```
//!
//! then Keras' Adam on `W` and `b` ([`FusedAdam::update`]). `tests/fused.rs` checks it against
//! the one-thread trainer, which runs burn's graph.

use burn::nn::Linear;

use super::data::Targets;
use super::fit::{FitMetrics, Loss};
use super::spec::{Activation, Layer, SequentialSpec};
use crate::dense::DenseLayer;
use crate::FusedAdam;

/// One output layer and its loss, with its Adam state.
pub(crate) struct DenseHead {
    loss: Loss,
    pub(crate) layer: DenseLayer,
}

impl DenseHead {
    /// The head of `head_spec` (the model without its first layer), when it is one `Dense`
    /// with a bias that this file computes for `loss`: logits (linear, or a softmax Keras folds
    /// into the loss) with sparse categorical cross-entropy, one logit (linear, or a sigmoid
    /// folded into the loss) with binary cross-entropy, or one linear unit with mean squared
    /// error. `false` for any other head.
    pub(crate) fn fits(head_spec: &SequentialSpec, loss: Loss) -> bool {
        matches!(
            (head_spec.layers.as_slice(), loss),
            ([Layer::Dense { use_bias: true, activation: Activation::Linear | Activation::Softmax, .. }], Loss::SparseCategoricalCrossentropy)
                | ([Layer::Dense { units: 1, use_bias: true, activation: Activation::Linear | Activation::Sigmoid, .. }], Loss::BinaryCrossentropy)
                | ([Layer::Dense { units: 1, use_bias: true, activation: Activation::Linear, .. }], Loss::MeanSquaredError)
        )
    }

    pub(crate) fn new(layer: &Linear, loss: Loss, adam: FusedAdam) -> DenseHead {
        DenseHead { loss, layer: DenseLayer::new(layer, adam) }
    }

    /// One step on hidden activations `h` (`rows x d_in`): the batch's metrics (loss summed
    /// over its rows) and dLoss/dh, after the layer's Adam step.
    pub(crate) fn step(&mut self, h: &[f32], y: &Targets, lr: f64) -> (FitMetrics, Vec<f32>) {
        let k = self.layer.units;
        let rows = h.len() / self.layer.d_in;
        let mut z = Vec::with_capacity(rows * k);
        self.layer.forward(h, &mut z);
        let mut m = FitMetrics { n: rows, ..Default::default() };
        let scale = 1.0 / rows.max(1) as f32;
        // z becomes dz in place.
        match (self.loss, y) {
            (Loss::SparseCategoricalCrossentropy, Targets::Classes(c)) => {
                for (zr, &label) in z.chunks_exact_mut(k).zip(c) {
                    let label = usize::try_from(label).ok().filter(|&l| l < k).unwrap_or_else(|| panic!("class {label} outside the model's {k} outputs"));
                    let (best, _) = crate::argmax(zr);
                    m.correct += usize::from(best == label);
                    let max = zr.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let sum: f32 = zr.iter().map(|v| (v - max).exp()).sum();
                    m.loss_sum += (max + sum.ln() - zr[label]) as f64;
                    for v in zr.iter_mut() {
                        *v = (*v - max).exp() / sum * scale;
                    }
                    zr[label] -= scale;
                }
            }
            (Loss::BinaryCrossentropy, Targets::Classes(c)) => {
                for (zr, &label) in z.chunks_exact_mut(k).zip(c) {
                    let (x, y) = (zr[0], label as f32);
                    m.correct += usize::from(i64::from(x > 0.0) == label);
                    // max(x, 0) - x y + log(1 + exp(-|x|)), as `fit::loss_and_metrics` writes it.
                    m.loss_sum += (x.max(0.0) - x * y + (-x.abs()).exp().ln_1p()) as f64;
                    zr[0] = (1.0 / (1.0 + (-x).exp()) - y) * scale;
                }
            }
            (Loss::MeanSquaredError, Targets::Values(v)) => {
                for (zr, &t) in z.chunks_exact_mut(k).zip(v) {
                    let e = zr[0] - t;
                    m.abs_err += e.abs() as f64;
                    m.sq_err += (e * e) as f64;
                    m.loss_sum += (e * e) as f64;
                    zr[0] = 2.0 * e * scale;
                }
            }
            (l, _) => panic!("loss {l:?} does not match the targets"),
        }
        let dz = z;
        // dh = dz Wᵀ, before the step moves W.
        let dh = self.layer.input_gradient(&dz);
        self.layer.step(h, &dz, lr);
        (m, dh)
    }
}
