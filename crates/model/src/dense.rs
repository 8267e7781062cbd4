//! One dense layer on plain `f32` slices, with its Adam state: what the fused trainer's column
//! blocks (`parallel.rs`) and its written-out output head (`sequential/fused_head.rs`) share.
//! Its forward pass is `x W + b`; its backward pass and step take `dz` (dLoss/d(x W + b)) and
//! compute `dW = xᵀ dz`, `db = Σ_rows dz`, then Keras' Adam in place. The products are `gemm`
//! calls (`matmul.rs`).

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor, TensorData};

use crate::matmul::{product, Shape};
use crate::FusedAdam;

/// Adam's state of one dense layer: its step count and the moments of its kernel and bias.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DenseMoments {
    pub time: i32,
    pub m_w: Vec<f32>,
    pub v_w: Vec<f32>,
    pub m_b: Vec<f32>,
    pub v_b: Vec<f32>,
}

impl DenseMoments {
    fn zeros(weights: usize, biases: usize) -> DenseMoments {
        DenseMoments { time: 0, m_w: vec![0.0; weights], v_w: vec![0.0; weights], m_b: vec![0.0; biases], v_b: vec![0.0; biases] }
    }

    /// Whether these moments fit a layer of `weights` and `biases` parameters.
    pub(crate) fn fits(&self, weights: usize, biases: usize) -> bool {
        self.m_w.len() == weights && self.v_w.len() == weights && self.m_b.len() == biases && self.v_b.len() == biases
    }
}

/// A dense layer's kernel (`d_in x units` row-major, burn's `Linear` layout) and bias, its Adam
/// state, and gradient buffers kept between steps.
pub(crate) struct DenseLayer {
    pub d_in: usize,
    pub units: usize,
    w: Vec<f32>,
    b: Vec<f32>,
    adam: FusedAdam,
    moments: DenseMoments,
    d_w: Vec<f32>,
    d_b: Vec<f32>,
    device: Device,
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32 tensor")
}

impl DenseLayer {
    /// The values of `layer` (a missing bias as zeros), with fresh Adam state.
    pub(crate) fn new(layer: &Linear, adam: FusedAdam) -> DenseLayer {
        let weight = layer.weight.val();
        let device = weight.device();
        let [d_in, units] = weight.dims();
        let b = layer.bias.as_ref().map(|b| values(b.val())).unwrap_or_else(|| vec![0.0; units]);
        let w = values(weight);
        DenseLayer { d_in, units, moments: DenseMoments::zeros(w.len(), units), d_w: vec![0.0; w.len()], d_b: vec![0.0; units], w, b, adam, device }
    }

    /// The layer as burn's (fresh parameters with the current values).
    pub(crate) fn linear(&self) -> Linear {
        let weight = Tensor::<2>::from_data(TensorData::new(self.w.clone(), [self.d_in, self.units]), &self.device);
        let bias = Tensor::<1>::from_data(TensorData::new(self.b.clone(), [self.units]), &self.device);
        Linear { weight: Param::from_tensor(weight), bias: Some(Param::from_tensor(bias)) }
    }

    pub(crate) fn moments(&self) -> &DenseMoments {
        &self.moments
    }

    /// Takes saved moments; `false` (and nothing changed) when they are another layer's.
    pub(crate) fn set_moments(&mut self, m: DenseMoments) -> bool {
        let fits = m.fits(self.w.len(), self.units);
        if fits {
            self.moments = m;
        }
        fits
    }

    /// `out = x W + b` for `x` of `rows x d_in`; `out` becomes `rows x units`.
    pub(crate) fn forward(&self, x: &[f32], out: &mut Vec<f32>) {
        let rows = x.len() / self.d_in;
        out.clear();
        for _ in 0..rows {
            out.extend_from_slice(&self.b);
        }
        product(out, Shape::rows(rows, self.units), true, x, Shape::rows(rows, self.d_in), &self.w, Shape::rows(self.d_in, self.units));
    }

    /// dLoss/dx = `dz Wᵀ`, with the weights as they are (call before [`DenseLayer::step`]).
    pub(crate) fn input_gradient(&self, dz: &[f32]) -> Vec<f32> {
        let rows = dz.len() / self.units;
        let mut dx = vec![0.0f32; rows * self.d_in];
        product(&mut dx, Shape::rows(rows, self.d_in), false, dz, Shape::rows(rows, self.units), &self.w, Shape::rows(self.d_in, self.units).t());
        dx
    }

    /// The gradients from the inputs `x` and `dz` (both with the batch's rows), then one Adam
    /// step of the kernel and the bias.
    pub(crate) fn step(&mut self, x: &[f32], dz: &[f32], lr: f64) {
        let rows = x.len() / self.d_in;
        assert_eq!(dz.len(), rows * self.units, "output gradient of the batch's shape");
        self.d_b.fill(0.0);
        for row in dz.chunks_exact(self.units) {
            for (d, &z) in self.d_b.iter_mut().zip(row) {
                *d += z;
            }
        }
        // dW = xᵀ dz: xᵀ is x read with its strides swapped.
        product(&mut self.d_w, Shape::rows(self.d_in, self.units), false, x, Shape::rows(rows, self.d_in).t(), dz, Shape::rows(rows, self.units));
        let m = &mut self.moments;
        m.time += 1;
        let lr = lr as f32;
        self.adam.update(lr, m.time, &mut self.w, &self.d_w, &mut m.m_w, &mut m.v_w);
        self.adam.update(lr, m.time, &mut self.b, &self.d_b, &mut m.m_b, &mut m.v_b);
    }
}
