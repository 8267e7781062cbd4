//! A checkpoint of the older `config.json` layout (written by tensorcdc before the MNIST path
//! became a configuration of the general one: `train --data fashion-mnist --epochs 1`, in
//! `fixtures/blog-config-json`) loads as the Sequential model it is and scores what the
//! version that wrote it printed for it (`evaluate`: loss 0.4332, accuracy 0.8482 on the
//! 10,000 Fashion-MNIST test images).

use std::path::Path;

use tensorcdc_dataset::features::FeatureSpec;
use tensorcdc_dataset::mnist::{self, Split};
use tensorcdc_model::default_device;
use tensorcdc_model::sequential::{checkpoint, Data};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/blog-config-json");
const FASHION: &str = "/usr/share/datasets/fashion-mnist";

#[test]
fn an_older_blog_checkpoint_scores_what_it_scored() {
    assert!(checkpoint::is_image_model(Path::new(FIXTURE)));
    let (meta, p) = checkpoint::load(Path::new(FIXTURE), &default_device()).unwrap();
    assert_eq!(meta.features, FeatureSpec::mnist());
    assert_eq!(meta.epochs_done, 1);
    let test = mnist::load(Path::new(FASHION), Split::Test).expect("Debian's dataset-fashion-mnist (scripts/install-deps.sh)");
    let m = p.evaluate(&Data::images(&test.pixels, &test.labels), 1024);
    assert_eq!(m.n, 10_000);
    assert!((m.accuracy() - 0.8482).abs() < 5e-5, "accuracy {}", m.accuracy());
    assert!((m.loss() - 0.4332).abs() < 5e-5, "loss {}", m.loss());
}

#[test]
fn a_damaged_older_checkpoint_is_named() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.bpk"] {
        std::fs::copy(Path::new(FIXTURE).join(f), dir.path().join(f)).unwrap();
    }
    let w = dir.path().join("model.bpk");
    let mut bytes = std::fs::read(&w).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&w, &bytes).unwrap();
    let e = checkpoint::load(dir.path(), &default_device()).unwrap_err().to_string();
    assert!(e.contains("model.bpk") && e.contains("corrupt") && e.contains("config.json records"), "{e}");
    std::fs::remove_file(&w).unwrap();
    let e = checkpoint::load(dir.path(), &default_device()).unwrap_err().to_string();
    assert!(e.contains("weights file missing"), "{e}");
}
