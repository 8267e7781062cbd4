//! The fused two-core strategy computes what one thread computes: the same trainer settings
//! with `threads: 2` and `threads: 1` give the same predictions after the same epochs (the
//! expectation is the one-thread trainer, a different code path), for the blog's network and
//! for a deeper regression head; and a fused trainer's checkpoint loads as it was saved.

use tensorcdc_dataset::features::FeatureSpec;
use tensorcdc_model::default_device;
use tensorcdc_model::sequential::{checkpoint, Activation, Data, FitSettings, Init, Layer, Loss, SeqTrainer, SequentialSpec, Targets};

/// `n` rows of `w` values in 0..1 from a fixed formula.
fn rows(n: usize, w: usize) -> Vec<f32> {
    (0..n * w).map(|i| ((i * 7919 % 257) as f32) / 257.0).collect()
}

fn trained(spec: &SequentialSpec, loss: Loss, data: &Data, threads: usize, epochs: usize) -> SeqTrainer {
    let settings = FitSettings { seed: 5, batch_size: 16, threads, ..Default::default() };
    let mut t = SeqTrainer::new(spec.clone(), loss, settings, &default_device()).unwrap();
    for _ in 0..epochs {
        t.fit_epoch(data, |_| {});
    }
    t
}

fn max_gap(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter().flatten().zip(b.iter().flatten()).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Trains `spec` on one thread and on `threads`, asserts the second took the fused strategy
/// and predicts `data` within 1e-4 of the first (the expectation: one thread, burn's graph),
/// and returns both (one thread first) for the checks each test adds.
fn one_thread_and_fused(spec: &SequentialSpec, loss: Loss, data: &Data, threads: usize, epochs: usize) -> (SeqTrainer, SeqTrainer) {
    let one = trained(spec, loss, data, 1, epochs);
    let fused = trained(spec, loss, data, threads, epochs);
    assert!(!one.is_fused());
    assert!(fused.is_fused(), "Dense(relu) first, Adam, CPU, {threads} threads: the fused strategy");
    let (p1, p2) = (one.predictor().predict(&data.x, data.width).unwrap(), fused.predictor().predict(&data.x, data.width).unwrap());
    assert!(max_gap(&p1, &p2) < 1e-4, "outputs differ by {}", max_gap(&p1, &p2));
    (one, fused)
}

#[test]
fn the_blogs_network_trains_the_same_on_two_threads_as_on_one() {
    let w = 40;
    let x = rows(200, w);
    // Three classes by the first feature's third, a rule the network can learn.
    let y = x.chunks(w).map(|r| (r[0] * 3.0).min(2.0) as i64).collect();
    let data = Data { x, width: w, y: Targets::Classes(y) };
    let spec = SequentialSpec::dense(w, &[32], 10);
    let (_, two) = one_thread_and_fused(&spec, Loss::SparseCategoricalCrossentropy, &data, 2, 8);
    // And it learned: the untrained model's loss is about ln 10 = 2.30.
    let loss = two.predictor().evaluate(&data, 64).loss();
    assert!(loss < 1.5, "loss {loss}");
}

#[test]
fn a_deeper_regression_head_trains_the_same_fused() {
    let w = 12;
    let x = rows(160, w);
    // y = sum of the first three features, a target the network can fit.
    let y: Vec<f32> = x.chunks(w).map(|r| r[0] + r[1] + r[2]).collect();
    let data = Data { x, width: w, y: Targets::Values(y) };
    let dense = |units, activation| Layer::Dense { units, activation, use_bias: true, kernel_initializer: Init::GlorotUniform, bias_initializer: Init::Zeros };
    let spec =
        SequentialSpec { inputs: w, input_shape: None, layers: vec![dense(24, Activation::Relu), dense(8, Activation::Tanh), dense(1, Activation::Linear)] };
    one_thread_and_fused(&spec, Loss::MeanSquaredError, &data, 3, 4);
}

/// One output layer is computed by hand (`fused_head.rs`), not by burn's graph: a one-unit
/// regression head with squared error, and a softmax classifier as Keras users write it.
#[test]
fn one_layer_heads_written_out_train_the_same_as_burns_graph() {
    let w = 12;
    let x = rows(160, w);
    let dense = |units, activation| Layer::Dense { units, activation, use_bias: true, kernel_initializer: Init::GlorotUniform, bias_initializer: Init::Zeros };
    let y: Vec<f32> = x.chunks(w).map(|r| 2.0 * r[0] - r[1] + 0.5).collect();
    let data = Data { x: x.clone(), width: w, y: Targets::Values(y) };
    let spec = SequentialSpec { inputs: w, input_shape: None, layers: vec![dense(32, Activation::Relu), dense(1, Activation::Linear)] };
    let (one, two) = one_thread_and_fused(&spec, Loss::MeanSquaredError, &data, 2, 6);
    let (e1, e2) = (one.predictor().evaluate(&data, 64), two.predictor().evaluate(&data, 64));
    // Learned: below y's variance (4/12 + 1/12), what always predicting the mean would score.
    assert!((e1.loss() - e2.loss()).abs() < 1e-5 && e2.loss() < 5.0 / 12.0, "loss {} vs {}", e1.loss(), e2.loss());

    let y = x.chunks(w).map(|r| i64::from(r[2] > 0.5) + i64::from(r[3] > 0.5)).collect();
    let data = Data { x: x.clone(), width: w, y: Targets::Classes(y) };
    let spec = SequentialSpec { inputs: w, input_shape: None, layers: vec![dense(48, Activation::Relu), dense(3, Activation::Softmax)] };
    let (one, three) = one_thread_and_fused(&spec, Loss::SparseCategoricalCrossentropy, &data, 3, 6);
    let (e1, e3) = (one.predictor().evaluate(&data, 64), three.predictor().evaluate(&data, 64));
    assert_eq!(e1.correct, e3.correct);

    // A binary classifier as Keras users write it: Dense(1, sigmoid), binary cross-entropy.
    let y = x.chunks(w).map(|r| i64::from(r[4] + r[5] > 1.0)).collect();
    let data = Data { x: x.clone(), width: w, y: Targets::Classes(y) };
    let spec = SequentialSpec { inputs: w, input_shape: None, layers: vec![dense(16, Activation::Relu), dense(1, Activation::Sigmoid)] };
    let (one, two) = one_thread_and_fused(&spec, Loss::BinaryCrossentropy, &data, 2, 6);
    let (e1, e2) = (one.predictor().evaluate(&data, 64), two.predictor().evaluate(&data, 64));
    assert_eq!(e1.correct, e2.correct);
    assert!((e1.loss() - e2.loss()).abs() < 1e-5, "loss {} vs {}", e1.loss(), e2.loss());
}

#[test]
fn models_the_fused_strategy_cannot_take_train_on_one_thread() {
    let w = 8;
    // A first layer with another activation than relu.
    let mut spec = SequentialSpec::dense(w, &[16], 3);
    if let Layer::Dense { activation, .. } = &mut spec.layers[0] {
        *activation = Activation::Tanh;
    }
    let t = SeqTrainer::new(spec, Loss::SparseCategoricalCrossentropy, FitSettings { threads: 2, ..Default::default() }, &default_device()).unwrap();
    assert!(!t.is_fused());
    // A single layer (nothing to run beside the blocks).
    let t = SeqTrainer::new(
        SequentialSpec::dense(w, &[], 3),
        Loss::SparseCategoricalCrossentropy,
        FitSettings { threads: 2, ..Default::default() },
        &default_device(),
    )
    .unwrap();
    assert!(!t.is_fused());
}

#[test]
fn a_fused_trainers_checkpoint_loads_as_saved_and_resumes() {
    let spec = FeatureSpec::mnist();
    let w = spec.width();
    let data = Data { x: rows(64, w), width: w, y: Targets::Classes((0..64).map(|i| i % 10).collect()) };
    let t = trained(&SequentialSpec::mnist(), Loss::SparseCategoricalCrossentropy, &data, 2, 1);
    assert!(t.is_fused());
    let dir = tempfile::tempdir().unwrap();
    checkpoint::save(&t, &spec, dir.path()).unwrap();
    let (meta, p) = checkpoint::load(dir.path(), &default_device()).unwrap();
    assert_eq!(meta.settings.threads, 2);
    let probe = &data.x[..4 * w];
    assert_eq!(p.predict(probe, w).unwrap(), t.predictor().predict(probe, w).unwrap());
    // Resumed: the weights as saved, and Adam's state too (its own file).
    let (_, r) = checkpoint::resume(dir.path(), &default_device()).unwrap();
    assert!(r.is_fused());
    assert_eq!(r.predictor().predict(probe, w).unwrap(), t.predictor().predict(probe, w).unwrap());
    assert!(dir.path().join("optimizer-fused.bin").is_file() && !dir.path().join("optimizer.bpk").exists());
}

/// A fused trainer saved after one epoch and resumed for a second ends where two epochs
/// without a stop end (Adam's step count and moments carried over); with its state file
/// removed, the resumed trainer's Adam starts afresh and ends elsewhere, so the comparison
/// can tell the two apart.
#[test]
fn a_resumed_fused_trainer_continues_its_adam_state() {
    let w = 20;
    let x = rows(96, w);
    let y = x.chunks(w).map(|r| (r[1] * 4.0).min(3.0) as i64).collect();
    let data = Data { x, width: w, y: Targets::Classes(y) };
    let spec = SequentialSpec::dense(w, &[32], 4);
    let features = FeatureSpec::mnist();
    let straight = trained(&spec, Loss::SparseCategoricalCrossentropy, &data, 2, 2);
    let dir = tempfile::tempdir().unwrap();
    checkpoint::save(&trained(&spec, Loss::SparseCategoricalCrossentropy, &data, 2, 1), &features, dir.path()).unwrap();
    let second_epoch = |dir: &std::path::Path| {
        let (_, mut r) = checkpoint::resume(dir, &default_device()).unwrap();
        assert!(r.is_fused());
        r.fit_epoch(&data, |_| {});
        r.predictor().predict(&data.x, w).unwrap()
    };
    let expected = straight.predictor().predict(&data.x, w).unwrap();
    let resumed = second_epoch(dir.path());
    assert!(max_gap(&expected, &resumed) < 1e-6, "resumed differs by {}", max_gap(&expected, &resumed));
    std::fs::remove_file(dir.path().join("optimizer-fused.bin")).unwrap();
    let afresh = second_epoch(dir.path());
    assert!(max_gap(&expected, &afresh) > 1e-4, "Adam started afresh ends within {} of the uninterrupted run", max_gap(&expected, &afresh));
    // A damaged state file (a header announcing a trillion weights, or a negative step
    // count) is refused before anything is allocated, and Adam starts afresh.
    for header in [
        r#"{"format":"tensorcdc fused Adam state","version":1,"layers":[{"time":1,"weights":1000000000000,"biases":1}]}"#,
        r#"{"format":"tensorcdc fused Adam state","version":1,"layers":[{"time":-3,"weights":0,"biases":0}]}"#,
        r#"{"format":"tensorcdc fused Adam state","version":1,"layers":[]}"#,
    ] {
        std::fs::write(dir.path().join("optimizer-fused.bin"), format!("{header}\n")).unwrap();
        assert_eq!(second_epoch(dir.path()), afresh);
    }
}
