//! The drift test: Fashion-MNIST labels permuted halfway through the stream. `tensorcdc run`
//! learning continuously gets back within 3 points of its accuracy before the change within
//! 3,000 labelled rows after it; the blog's frozen model never does (it stays near zero, the
//! permutation moves every class).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuous_learning_recovers_from_permuted_labels_and_the_frozen_model_does_not() {
    // The tensorcdc binary sits beside this test's folder: target/release/deps/drift-… → target/release/tensorcdc.
    let bin = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("tensorcdc");
    assert!(bin.exists(), "{} not built (cargo test --workspace builds it)", bin.display());
    let dir = tempfile::tempdir().unwrap();
    let o = tensorcdc_bench::drift::drift(&bin, dir.path(), 4, 8).await.unwrap();
    assert!(o.before >= 0.75, "accuracy before the change {:.3}: {:?}", o.before, o.points);
    let recovered = o.recovered.unwrap_or_else(|| panic!("never back within 3 points of {:.3}: {:?}", o.before, o.points));
    assert!(recovered <= 3000, "back within 3 points only after {recovered} labelled rows: {:?}", o.points);
    assert!(o.frozen_best_after < o.before - 0.5, "the frozen model should not recover: best {:.3} after the change: {:?}", o.frozen_best_after, o.points);
}
