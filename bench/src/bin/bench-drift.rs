//! Drift: `tensorcdc run` learning continuously against the blog's frozen model while the
//! labels of a Fashion-MNIST stream are permuted halfway (see `tensorcdc_bench::drift`).
//!
//! Prints one JSON line, writes `OUT/drift.csv` and `OUT/drift.html`, and screenshots the
//! chart (`docs/drift.png`) and the continuous run's live page (`docs/live.png`) with headless
//! Chromium.
//!
//! Usage: bench-drift [OUT_DIR] [BLOCKS_BEFORE] [BLOCKS_AFTER]

use std::path::{Path, PathBuf};

use anyhow::Result;
use tensorcdc_bench::drift::{chart, chromium_screenshot, drift, BLOCK, EVAL, SNAPSHOT};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(args.get(1).map(String::as_str).unwrap_or("bench/out/drift"));
    let before_blocks: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(6);
    let after_blocks: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(24);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let bin = std::env::current_exe()?.with_file_name("tensorcdc");
    let o = drift(&bin, &dir, before_blocks, after_blocks).await?;
    std::fs::write(dir.join("drift.html"), chart(&o.points, o.before, (SNAPSHOT + before_blocks * BLOCK) as i64))?;
    std::fs::create_dir_all("docs")?;
    chromium_screenshot(&format!("file://{}", std::fs::canonicalize(dir.join("drift.html"))?.display()), Path::new("docs/drift.png"), "860,440", 500)?;
    if let Some(u) = &o.runs[0].url {
        chromium_screenshot(u, Path::new("docs/live.png"), "1200,900", 3000)?;
    }
    println!(
        "{}",
        serde_json::json!({
            "bench": "drift", "snapshot_rows": SNAPSHOT, "block": BLOCK, "eval_rows_per_block": EVAL,
            "accuracy_before_change": o.before, "recovered_within_3_points_after_labelled_rows": o.recovered,
            "continuous_last": o.points.last().map_or(0.0, |p| p.1), "frozen_best_after_change": o.frozen_best_after,
            "versions_continuous": std::fs::read_to_string(o.runs[0].out.join("versions.jsonl")).unwrap_or_default().lines().count(),
        })
    );
    Ok(())
}
