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

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor, TensorData};

use super::fit::{FitMetrics, Loss, Targets};
use super::spec::{Activation, Layer, SequentialSpec};
use crate::matmul::{product, Shape};
use crate::parallel::DenseMoments;
use crate::FusedAdam;

/// One output layer and its loss, with its Adam state.
pub(crate) struct DenseHead {
    loss: Loss,
    d_in: usize,
    k: usize,
    /// `d_in x k` row-major (burn's `Linear` layout), and the bias.
    w: Vec<f32>,
    b: Vec<f32>,
    adam: FusedAdam,
    pub(crate) moments: DenseMoments,
    device: Device,
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
        let weight = layer.weight.val();
        let device = weight.device();
        let [d_in, k] = weight.dims();
        let values = |d: TensorData| d.convert::<f32>().try_into_vec::<f32>().expect("f32 tensor");
        let w = values(weight.into_data());
        let b = layer.bias.as_ref().map(|b| values(b.val().into_data())).unwrap_or_else(|| vec![0.0; k]);
        DenseHead { loss, d_in, k, moments: DenseMoments::zeros(w.len(), k), w, b, adam, device }
    }

    /// Whether saved moments are this layer's size.
    pub(crate) fn takes(&self, m: &DenseMoments) -> bool {
        m.fits(self.w.len(), self.k)
    }

    /// The layer as burn's (fresh parameters with the current values).
    pub(crate) fn layer(&self) -> Linear {
        let weight = Tensor::<2>::from_data(TensorData::new(self.w.clone(), [self.d_in, self.k]), &self.device);
        let bias = Tensor::<1>::from_data(TensorData::new(self.b.clone(), [self.k]), &self.device);
        Linear { weight: Param::from_tensor(weight), bias: Some(Param::from_tensor(bias)) }
    }

    /// One step on hidden activations `h` (`rows x d_in`): the batch's metrics (loss summed
    /// over its rows) and dLoss/dh, after the layer's Adam step.
    pub(crate) fn step(&mut self, h: &[f32], y: &Targets, lr: f64) -> (FitMetrics, Vec<f32>) {
        let (d, k) = (self.d_in, self.k);
        let rows = h.len() / d;
        let (h_shape, w_shape, z_shape) = (Shape::rows(rows, d), Shape::rows(d, k), Shape::rows(rows, k));
        // z = h W + b
        let mut z: Vec<f32> = self.b.iter().copied().cycle().take(rows * k).collect();
        product(&mut z, z_shape, true, h, h_shape, &self.w, w_shape);
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
        // dh = dz Wᵀ, before W moves.
        let mut dh = vec![0.0f32; rows * d];
        product(&mut dh, h_shape, false, &dz, z_shape, &self.w, w_shape.t());
        // dW = hᵀ dz, db = column sums of dz.
        let mut d_w = vec![0.0f32; d * k];
        product(&mut d_w, w_shape, false, h, h_shape.t(), &dz, z_shape);
        let mut d_b = vec![0.0f32; k];
        for dzr in dz.chunks_exact(k) {
            for (gb, &g) in d_b.iter_mut().zip(dzr) {
                *gb += g;
            }
        }
        self.moments.step(&self.adam, lr, &mut self.w, &d_w, &mut self.b, &d_b);
        (m, dh)
    }
}
