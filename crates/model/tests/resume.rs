//! A checkpoint resumed for training (`tensorcdc run` after a restart) carries on from the
//! saved weights and optimizer state, and its gradients still flow.

use tensorcdc_dataset::features::FeatureSpec;
use tensorcdc_model::default_device;
use tensorcdc_model::sequential::{checkpoint, Data, FitSettings, Loss, SeqTrainer, SequentialSpec, Targets};

#[test]
fn a_resumed_checkpoint_predicts_as_saved_and_keeps_learning() {
    let spec = FeatureSpec::mnist();
    let w = spec.width();
    let x: Vec<f32> = (0..40 * w).map(|i| ((i * 7919 % 257) as f32) / 257.0).collect();
    let data = Data { x, width: w, y: Targets::Classes((0..40).map(|i| i % 10).collect()) };
    let settings = FitSettings { seed: 3, batch_size: 8, ..Default::default() };
    let mut t = SeqTrainer::new(SequentialSpec::dense(w, &[16], 10), Loss::SparseCategoricalCrossentropy, settings, &default_device()).unwrap();
    t.fit_epoch(&data, |_| {});
    let dir = tempfile::tempdir().unwrap();
    checkpoint::save(&t, &spec, dir.path()).unwrap();
    let (meta, mut r) = checkpoint::resume(dir.path(), &default_device()).unwrap();
    assert_eq!(meta.epochs_done, 1);
    assert_eq!(r.epochs_done, 1);
    let probe = &data.x[..3 * w];
    assert_eq!(r.predictor().predict(probe, w).unwrap(), t.predictor().predict(probe, w).unwrap(), "the saved weights, unchanged");
    // The optimizer's state came back too: one more epoch of each gives the same weights as
    // the trainer that never stopped (Adam's moments started from zero would not).
    r.fit_epoch(&data, |_| {});
    t.fit_epoch(&data, |_| {});
    assert_eq!(r.predictor().predict(probe, w).unwrap(), t.predictor().predict(probe, w).unwrap(), "the same step from the same state");
    let before = r.predictor().evaluate(&data, 64).loss();
    for _ in 0..20 {
        r.fit_epoch(&data, |_| {});
        t.fit_epoch(&data, |_| {});
    }
    let after = r.predictor().evaluate(&data, 64).loss();
    let unbroken = t.predictor().evaluate(&data, 64).loss();
    eprintln!("loss {before} -> resumed {after}, never stopped {unbroken}");
    // The gradients flow: it learns as fast as the trainer that never stopped.
    assert!(before - after > 0.5 * (before - unbroken) && before - unbroken > 0.01, "loss {before} -> resumed {after}, never stopped {unbroken}");
}
