//! Keras' Adam as a burn [`Optimizer`] that updates each parameter in one pass.
//!
//! burn's `Adam` computes the same update with a dozen tensor operations, each reading and
//! writing the whole parameter (for the 784x128 kernel: 400 kB a pass, more than the L2 cache
//! holds twice over), so at batch 64 it cost about a third of a training step. This one moves the
//! parameter, its gradient and both moments out of their tensors (without copying when burn
//! holds the only reference), updates them in place in one loop, and moves them back. Its state is burn's
//! own [`AdamState`], so records and optimizer checkpoints keep burn's layout.
//!
//! The arithmetic is Keras 3's `Adam.update_step`, operation by operation:
//!
//! ```text
//! alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
//! m += (g - m) * (1 - beta_1)
//! v += (g^2 - v) * (1 - beta_2)
//! p -= (m * alpha) / (sqrt(v) + epsilon)
//! ```
//!
//! burn's Adam differs in one place: it adds `epsilon * sqrt(1 - beta_2^t)` to `sqrt(v)` (the
//! PyTorch form), which early in training and for small gradients is a different step. Moments
//! that fall below f32's smallest normal value are flushed to zero, as TensorFlow's CPU kernels do.

use burn::optim::{AdamState, AdaptiveMomentumState, LearningRate, Optimizer};
use burn::tensor::{Device, Tensor, TensorData};

/// Adam with Keras' defaults unless set: β1 0.9, β2 0.999, ε 1e-7.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FusedAdam {
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
}

impl Default for FusedAdam {
    fn default() -> Self {
        FusedAdam { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7 }
    }
}

/// Subnormal values become zero, as TensorFlow's CPU kernels (flush-to-zero) make them. The
/// first moment of a weight whose gradient is always zero (a pixel that is black in every image)
/// decays by β1 each step and spends about two hundred steps subnormal before it reaches zero;
/// arithmetic on subnormals is many times slower, and such weights are a third of the kernel.
/// The update they would have made is below 1e-38, far under the weight's last bit.
#[inline(always)]
fn flush(x: f32) -> f32 {
    if x.abs() < f32::MIN_POSITIVE {
        0.0
    } else {
        x
    }
}

fn f32s(d: &mut TensorData) -> &mut [f32] {
    d.as_mut_slice::<f32>().expect("f32 tensor data")
}

impl FusedAdam {
    /// One Adam update of `p` in place, with moments `m`, `v` at step `time` (1 on the first).
    pub fn update(&self, lr: f32, time: i32, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        let (b1, b2, eps) = (self.beta_1, self.beta_2, self.epsilon);
        let (f1, f2) = (1.0 - b1, 1.0 - b2);
        let alpha = lr * (1.0 - b2.powi(time)).sqrt() / (1.0 - b1.powi(time));
        let n = p.len();
        assert!(g.len() == n && m.len() == n && v.len() == n, "parameter, gradient and moments differ in size");
        // Compiled for the widest vector instructions the CPU has (pulp picks at run time):
        // the square root and the division dominate, and AVX2 halves their cost over SSE2.
        pulp::Arch::new().dispatch(
            #[inline(always)]
            || {
                for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                    *m = flush(*m + (g - *m) * f1);
                    *v = flush(*v + (g * g - *v) * f2);
                    *p -= (*m * alpha) / (v.sqrt() + eps);
                }
            },
        );
    }
}

impl FusedAdam {
    /// The same update as tensor operations, for devices other than the CPU (a GPU backend
    /// fuses them; moving the data to the host every step would not pay).
    pub(crate) fn step_tensors<const D: usize>(
        &self,
        lr: LearningRate,
        p: Tensor<D>,
        g: Tensor<D>,
        state: Option<AdamState<D>>,
    ) -> (Tensor<D>, Option<AdamState<D>>) {
        let (time, m, v) = match state {
            Some(s) => (s.momentum.time + 1, s.momentum.moment_1, s.momentum.moment_2),
            None => (1, p.zeros_like(), p.zeros_like()),
        };
        let (b1, b2) = (self.beta_1, self.beta_2);
        let t = time as i32;
        let alpha = lr as f32 * (1.0 - b2.powi(t)).sqrt() / (1.0 - b1.powi(t));
        let m = m.clone() + (g.clone() - m).mul_scalar(1.0 - b1);
        let v = v.clone() + (g.square() - v).mul_scalar(1.0 - b2);
        let p = p - m.clone().mul_scalar(alpha) / v.clone().sqrt().add_scalar(self.epsilon);
        (p, Some(AdamState::new(AdaptiveMomentumState::new(time, m, v))))
    }
}

impl Optimizer for FusedAdam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(&self, lr: LearningRate, tensor: Tensor<D>, grad: Tensor<D>, state: Option<AdamState<D>>) -> (Tensor<D>, Option<AdamState<D>>) {
        let device = tensor.device();
        if !crate::is_cpu(&device) {
            return self.step_tensors(lr, tensor, grad, state);
        }
        let shape = tensor.shape();
        let (time, mut m, mut v) = match state {
            Some(s) => (s.momentum.time + 1, s.momentum.moment_1.into_data(), s.momentum.moment_2.into_data()),
            None => (1, TensorData::zeros::<f32, _>(shape.clone()), TensorData::zeros::<f32, _>(shape.clone())),
        };
        // Moved out of the tensors when unshared (burn copies only if it must).
        let mut p = tensor.into_data();
        let g = grad.into_data();
        let g = g.as_slice::<f32>().expect("f32 gradient");
        self.update(lr as f32, time as i32, f32s(&mut p), g, f32s(&mut m), f32s(&mut v));
        let tensor = |d: TensorData| Tensor::<D>::from_data(d, &device);
        let state = AdamState::new(AdaptiveMomentumState::new(time, tensor(m), tensor(v)));
        (tensor(p), Some(state))
    }

    fn to_device<const D: usize>(mut state: AdamState<D>, device: &Device) -> AdamState<D> {
        state.momentum.moment_1 = state.momentum.moment_1.to_device(device);
        state.momentum.moment_2 = state.momentum.moment_2.to_device(device);
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keras' update written out in f64, independently of the vectorised loop.
    fn keras_reference(lr: f64, steps: &[Vec<f32>], start: &[f32]) -> Vec<f64> {
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-7f64);
        let mut p: Vec<f64> = start.iter().map(|&x| x as f64).collect();
        let (mut m, mut v) = (vec![0.0; p.len()], vec![0.0; p.len()]);
        for (t, g) in steps.iter().enumerate() {
            let t = (t + 1) as i32;
            let alpha = lr * (1.0 - b2.powi(t)).sqrt() / (1.0 - b1.powi(t));
            for i in 0..p.len() {
                let g = g[i] as f64;
                m[i] += (g - m[i]) * (1.0 - b1);
                v[i] += (g * g - v[i]) * (1.0 - b2);
                p[i] -= m[i] * alpha / (v[i].sqrt() + eps);
            }
        }
        p
    }

    type Step = fn(&FusedAdam, LearningRate, Tensor<2>, Tensor<2>, Option<AdamState<2>>) -> (Tensor<2>, Option<AdamState<2>>);

    /// Three steps of `step` give Keras' numbers; a gradient of zero leaves its weight alone;
    /// the step count is kept in the state.
    fn check_against_keras(step: Step) {
        let device = crate::default_device();
        let start: Vec<f32> = (0..300).map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0).collect();
        let mut grads: Vec<Vec<f32>> = (0..3).map(|s| (0..300).map(|i| (((i + 7 * s) * 53 % 97) as f32 - 48.0) / (10.0 + s as f32) * 1e-3).collect()).collect();
        for g in &mut grads {
            g[5] = 0.0;
        }
        let t = |x: &[f32]| Tensor::<2>::from_data(TensorData::new(x.to_vec(), [20, 15]), &device);
        let ours = FusedAdam::default();
        let (mut p, mut state) = (t(&start), None);
        for g in &grads {
            (p, state) = step(&ours, 0.001, p, t(g), state);
        }
        let got = p.into_data().try_to_vec::<f32>().unwrap();
        let want = keras_reference(0.001, &grads, &start);
        let worst = got.iter().zip(&want).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-6, "largest difference from Keras' update {worst}");
        assert!(got.iter().zip(&start).filter(|(a, s)| (*a - *s).abs() > 5e-4).count() > 250, "weights moved by about lr per step");
        assert_eq!(got[5], start[5]);
        assert_eq!(state.unwrap().momentum.time, 3);
    }

    /// Through burn's optimizer interface (the fused loop on the CPU).
    #[test]
    fn matches_keras_update() {
        check_against_keras(|adam, lr, p, g, s| adam.step(lr, p, g, s));
    }

    /// The tensor-operation form (used on GPUs), checked here on the CPU.
    #[test]
    fn tensor_form_matches_keras_update() {
        check_against_keras(|adam, lr, p, g, s| adam.step_tensors(lr, p, g, s));
    }
}
