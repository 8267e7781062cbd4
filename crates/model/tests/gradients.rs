//! Gradient checks: for every activation and every loss, the gradients burn's autodiff gives
//! for a small Sequential model match central finite differences of the loss.

use tensorcdc_model::default_device;
use tensorcdc_model::sequential::{Activation, Data, FitSettings, Init, Layer, Loss, SeqTrainer, SequentialSpec, Targets};

const ACTIVATIONS: [Activation; 8] =
    [Activation::Linear, Activation::Relu, Activation::Sigmoid, Activation::Tanh, Activation::Softmax, Activation::Gelu, Activation::Elu, Activation::Selu];

fn dense(units: usize, activation: Activation) -> Layer {
    Layer::Dense {
        units,
        activation,
        use_bias: true,
        kernel_initializer: Init::GlorotUniform,
        bias_initializer: Init::RandomUniform { minval: -0.3, maxval: 0.3 },
    }
}

/// Inputs 4 → Dense(5, hidden) → Dense(outputs, last), on 6 examples.
fn check(hidden: Activation, last: Activation, loss: Loss) {
    let outputs = match loss {
        Loss::SparseCategoricalCrossentropy => 3,
        _ => 1,
    };
    let spec = SequentialSpec { inputs: 4, input_shape: None, layers: vec![dense(5, hidden), dense(outputs, last)] };
    let x: Vec<f32> = (0..24).map(|i| ((i * 7 % 11) as f32 - 5.0) / 4.0).collect();
    let y = match loss {
        Loss::SparseCategoricalCrossentropy => Targets::Classes(vec![0, 1, 2, 1, 0, 2]),
        Loss::BinaryCrossentropy => Targets::Classes(vec![0, 1, 1, 0, 1, 0]),
        _ => Targets::Values(vec![0.5, -1.0, 2.0, 0.25, -0.5, 1.5]),
    };
    let data = Data { x, width: 4, y };
    let t = SeqTrainer::new(spec, loss, FitSettings { seed: 7, ..Default::default() }, &default_device()).unwrap();
    let (_, grads) = t.loss_and_gradients(&data);
    assert_eq!(grads.len(), 4, "two kernels and two biases");
    let eps = 1e-2f32;
    for (p, g) in grads.iter().enumerate() {
        for i in [0, g.len() / 2, g.len() - 1] {
            let numeric = (t.loss_with(&data, p, i, eps) - t.loss_with(&data, p, i, -eps)) / (2.0 * eps as f64);
            let tol = 2e-3 + 3e-2 * numeric.abs();
            assert!(
                (g[i] as f64 - numeric).abs() < tol,
                "{hidden:?} → {last:?} with {loss:?}: parameter {p}[{i}] autodiff {} vs finite difference {numeric}",
                g[i]
            );
        }
    }
}

#[test]
fn every_activation() {
    for a in ACTIVATIONS {
        check(a, Activation::Linear, Loss::MeanSquaredError);
    }
}

#[test]
fn every_loss() {
    check(Activation::Tanh, Activation::Softmax, Loss::SparseCategoricalCrossentropy);
    check(Activation::Relu, Activation::Linear, Loss::SparseCategoricalCrossentropy);
    check(Activation::Tanh, Activation::Sigmoid, Loss::BinaryCrossentropy);
    check(Activation::Gelu, Activation::Linear, Loss::BinaryCrossentropy);
    check(Activation::Tanh, Activation::Linear, Loss::MeanSquaredError);
    check(Activation::Tanh, Activation::Linear, Loss::MeanAbsoluteError);
    check(Activation::Tanh, Activation::Linear, Loss::Huber { delta: 1.0 });
}
