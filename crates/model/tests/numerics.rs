//! The model's maths against numbers computed independently: a plain f64 forward and
//! backward pass written here (checked itself by finite differences), and Adam's first
//! step computed by hand.
// The f64 reference is written with indices, as the formulas are (z_j = b_j + Σ_i x_i W_ij).
#![allow(clippy::needless_range_loop)]

use tensorcdc_dataset::features::FeatureSpec;
use tensorcdc_dataset::PIXELS;
use tensorcdc_model::default_device;
use tensorcdc_model::sequential::{checkpoint, Data, FitSettings, Loss, SeqTrainer, SequentialSpec};

fn to_vec(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&v| v as f64).collect()
}

/// The blog's network, trained on `threads` threads (1: the whole model on one thread; more:
/// the hidden layer in column blocks).
fn blog(settings: FitSettings) -> SeqTrainer {
    SeqTrainer::new(SequentialSpec::mnist(), Loss::SparseCategoricalCrossentropy, settings, &default_device()).unwrap()
}

/// Reference network in f64: W1 [784,128] row-major (input-major, as burn's Linear),
/// b1 [128], W2 [128,10], b2 [10].
struct Ref {
    w1: Vec<f64>,
    b1: Vec<f64>,
    w2: Vec<f64>,
    b2: Vec<f64>,
}

const H: usize = 128;
const C: usize = 10;

impl Ref {
    /// Mean cross-entropy over the batch, and the gradients (dW1, db1, dW2, db2).
    fn loss_and_grads(&self, x: &[f64], y: &[usize]) -> (f64, [Vec<f64>; 4]) {
        let b = y.len();
        let (mut dw1, mut db1, mut dw2, mut db2) = (vec![0.0; PIXELS * H], vec![0.0; H], vec![0.0; H * C], vec![0.0; C]);
        let mut loss = 0.0;
        for n in 0..b {
            let xi = &x[n * PIXELS..(n + 1) * PIXELS];
            let mut z = self.b1.clone();
            for (i, &xv) in xi.iter().enumerate() {
                if xv != 0.0 {
                    for j in 0..H {
                        z[j] += xv * self.w1[i * H + j];
                    }
                }
            }
            let h: Vec<f64> = z.iter().map(|v| v.max(0.0)).collect();
            let mut logits = self.b2.clone();
            for j in 0..H {
                for k in 0..C {
                    logits[k] += h[j] * self.w2[j * C + k];
                }
            }
            let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = logits.iter().map(|l| (l - m).exp()).sum();
            let p: Vec<f64> = logits.iter().map(|l| (l - m).exp() / sum).collect();
            loss += -(p[y[n]].ln());
            let dl: Vec<f64> = (0..C).map(|k| (p[k] - if k == y[n] { 1.0 } else { 0.0 }) / b as f64).collect();
            for k in 0..C {
                db2[k] += dl[k];
            }
            let mut dh = vec![0.0; H];
            for j in 0..H {
                for k in 0..C {
                    dw2[j * C + k] += h[j] * dl[k];
                    dh[j] += dl[k] * self.w2[j * C + k];
                }
                if z[j] <= 0.0 {
                    dh[j] = 0.0;
                }
                db1[j] += dh[j];
            }
            for (i, &xv) in xi.iter().enumerate() {
                if xv != 0.0 {
                    for j in 0..H {
                        dw1[i * H + j] += xv * dh[j];
                    }
                }
            }
        }
        (loss / b as f64, [dw1, db1, dw2, db2])
    }
}

fn batch() -> (Data, Vec<f64>, Vec<usize>) {
    // Two deterministic images with varied pixels.
    let pixels: Vec<u8> = (0..2 * PIXELS).map(|i| ((i * 37 + i / 5) % 256) as u8).collect();
    let labels = vec![3u8, 8];
    let x = pixels.iter().map(|&p| p as f64 / 255.0).collect();
    (Data::images(&pixels, &labels), x, labels.iter().map(|&l| l as usize).collect())
}

fn reference(trainer: &SeqTrainer) -> Ref {
    let p = trainer.parameters();
    Ref { w1: to_vec(&p[0]), b1: to_vec(&p[1]), w2: to_vec(&p[2]), b2: to_vec(&p[3]) }
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

#[test]
fn reference_gradients_match_finite_differences() {
    let trainer = blog(FitSettings::default());
    let mut r = reference(&trainer);
    let (_, x, y) = batch();
    let (_, grads) = r.loss_and_grads(&x, &y);
    let eps = 1e-6;
    // A few weights of each layer, chosen where the gradient is not zero.
    let picks: Vec<(usize, usize)> = vec![(2, 3), (2, 77), (3, 5), (0, 0), (1, 40), (0, 900 * 7 % (PIXELS * H))];
    for (layer, idx) in picks {
        let (orig, analytic) = match layer {
            0 => (r.w1[idx], grads[0][idx]),
            1 => (r.b1[idx], grads[1][idx]),
            2 => (r.w2[idx], grads[2][idx]),
            _ => (r.b2[idx], grads[3][idx]),
        };
        let set = |r: &mut Ref, v: f64| match layer {
            0 => r.w1[idx] = v,
            1 => r.b1[idx] = v,
            2 => r.w2[idx] = v,
            _ => r.b2[idx] = v,
        };
        set(&mut r, orig + eps);
        let lp = r.loss_and_grads(&x, &y).0;
        set(&mut r, orig - eps);
        let lm = r.loss_and_grads(&x, &y).0;
        set(&mut r, orig);
        let numeric = (lp - lm) / (2.0 * eps);
        assert!((numeric - analytic).abs() < 1e-6, "layer {layer} index {idx}: numeric {numeric} analytic {analytic}");
    }
}

#[test]
fn burn_gradients_match_the_reference() {
    let trainer = blog(FitSettings::default());
    let r = reference(&trainer);
    let (data, x, y) = batch();
    let (ref_loss, ref_grads) = r.loss_and_grads(&x, &y);
    let (burn_loss, g) = trainer.loss_and_gradients(&data);
    assert!((burn_loss - ref_loss).abs() < 1e-5, "loss {burn_loss} vs {ref_loss}");
    assert_eq!(g.len(), 4);
    for (i, (a, b)) in g.iter().map(|v| to_vec(v)).zip(&ref_grads).enumerate() {
        assert_eq!(a.len(), b.len());
        let d = max_abs_diff(&a, b);
        assert!(d < 1e-5, "parameter {i}: max |burn - reference| = {d}");
        assert!(b.iter().any(|v| v.abs() > 1e-4), "parameter {i} has a non-trivial gradient");
    }
}

#[test]
fn first_adam_step_matches_hand_computation() {
    // One thread, the hidden layer split over two threads, and over three (uneven blocks).
    for threads in [1, 2, 3] {
        first_adam_step(threads);
    }
}

fn first_adam_step(threads: usize) {
    let cfg = FitSettings { threads, ..Default::default() };
    let mut trainer = blog(cfg.clone());
    assert_eq!(trainer.is_fused(), threads > 1);
    let before = reference(&trainer);
    let (data, x, y) = batch();
    let (_, grads) = before.loss_and_grads(&x, &y);
    trainer.step(&data, &[0, 1]);
    let after = reference(&trainer);
    // Keras' Adam, step 1: m = (1-b1) g, v = (1-b2) g^2, alpha = lr sqrt(1-b2) / (1-b1):
    // p' = p - m alpha / (sqrt(v) + eps) = p - lr g / (|g| + eps / sqrt(1-b2)).
    let (lr, eps, beta_2) = (cfg.learning_rate, 1e-7, 0.999);
    for (name, p0, p1, g) in [
        ("w1", &before.w1, &after.w1, &grads[0]),
        ("b1", &before.b1, &after.b1, &grads[1]),
        ("w2", &before.w2, &after.w2, &grads[2]),
        ("b2", &before.b2, &after.b2, &grads[3]),
    ] {
        let eps_hat = eps / (1.0f64 - beta_2).sqrt();
        let expected: Vec<f64> = p0.iter().zip(g).map(|(p, g)| p - lr * g / (g.abs() + eps_hat)).collect();
        let d = max_abs_diff(&expected, p1);
        // The update is about 1e-3; checked to 0.5% of it. Where a gradient is near 1e-8, its
        // f32 rounding (which depends on how the GEMM blocks the sum) moves the step by up to
        // ~3e-6, since the step is lr * g / (|g| + 3e-6) there.
        assert!(d < 5e-6, "{threads} threads, {name}: max |burn - hand| = {d}");
        let moved = p0.iter().zip(p1.iter()).filter(|(a, b)| (*a - *b).abs() > 5e-4).count();
        assert!(moved > 0, "{threads} threads, {name}: no parameter moved");
    }
}

/// Training with the hidden layer split over threads is the same computation as on one thread:
/// after many steps the weights agree to rounding.
#[test]
fn split_hidden_layer_trains_like_one_thread() {
    let n = 96;
    let pixels: Vec<u8> = (0..n * PIXELS).map(|i| ((i * 131 + i / 97) % 256) as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i * 7 % 10) as u8).collect();
    let data = Data::images(&pixels, &labels);
    let run = |threads: usize| {
        let mut trainer = blog(FitSettings { threads, epochs: 4, batch_size: 32, ..Default::default() });
        let ends: Vec<_> = (0..4).map(|_| trainer.fit_epoch(&data, |_| {})).collect();
        (reference(&trainer), ends.last().unwrap().metrics.loss())
    };
    let (one, loss1) = run(1);
    for threads in [2, 3] {
        let (many, loss) = run(threads);
        for (name, a, b) in [("w1", &one.w1, &many.w1), ("b1", &one.b1, &many.b1), ("w2", &one.w2, &many.w2), ("b2", &one.b2, &many.b2)] {
            let d = max_abs_diff(a, b);
            assert!(d < 1e-4, "{threads} threads, {name}: max difference {d}");
        }
        assert!((loss - loss1).abs() < 1e-4, "{threads} threads: loss {loss} vs {loss1}");
    }
    let start = blog(FitSettings::default());
    assert!(max_abs_diff(&reference(&start).w1, &one.w1) > 1e-3, "training moved the weights");
}

#[test]
fn learns_a_separable_problem() {
    // Two classes that differ in which half of the image is bright: a few epochs suffice.
    let n = 256;
    let mut pixels = vec![0u8; n * PIXELS];
    let mut labels = vec![0u8; n];
    for i in 0..n {
        let l = (i % 2) as u8;
        labels[i] = l;
        for p in 0..PIXELS {
            let bright = (p < PIXELS / 2) == (l == 0);
            pixels[i * PIXELS + p] = if bright { 150 + ((i * 7 + p) % 100) as u8 } else { ((i + p) % 40) as u8 };
        }
    }
    let data = Data::images(&pixels, &labels);
    let mut trainer = blog(FitSettings { threads: 0, ..Default::default() });
    let ends: Vec<_> = (0..3).map(|_| trainer.fit_epoch(&data, |_| {})).collect();
    assert!(ends[2].metrics.loss() < ends[0].metrics.loss());
    let m = trainer.predictor().evaluate(&data, 64);
    assert_eq!(m.n, n);
    assert!(m.accuracy() > 0.95, "accuracy {}", m.accuracy());
}

#[test]
fn checkpoint_round_trip_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let device = default_device();
    let trainer = blog(FitSettings { threads: 2, ..Default::default() });
    let (data, _, _) = batch();
    let p0 = trainer.predictor().predict(&data.x, PIXELS).unwrap();
    checkpoint::save(&trainer, &FeatureSpec::mnist(), dir.path()).unwrap();
    assert!(checkpoint::is_image_model(dir.path()));
    let (meta, pred) = checkpoint::load(dir.path(), &device).unwrap();
    assert_eq!(meta.settings.batch_size, 64);
    let p1 = pred.predict(&data.x, PIXELS).unwrap();
    assert_eq!(p0, p1);
    assert!((p1[0].iter().sum::<f32>() - 1.0).abs() < 1e-5);
    let e = checkpoint::load(&dir.path().join("missing"), &device).unwrap_err().to_string();
    assert!(e.contains("missing") && e.contains("no such checkpoint"), "{e}");
    // One flipped byte in the weights: the checksum in model.json says so.
    let w = dir.path().join("model.bpk");
    let mut bytes = std::fs::read(&w).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&w, &bytes).unwrap();
    let e = checkpoint::load(dir.path(), &device).unwrap_err().to_string();
    assert!(e.contains("model.bpk") && e.contains("corrupt") && e.contains("SHA-256"), "{e}");
    assert!(pred.predict(&[0f32; 10], 10).is_err());
}
