//! `tensorcdc run` after a stop or a crash. The versions folder is the offset store: the last
//! published version says which transactions its labelled rows cover (`ack_lsn`) and how
//! many examples it has seen, and the persistent slot was confirmed no further than that.
//!
//! - No version yet: the slot (if a crash left one) is dropped with its offsets, and the run
//!   starts over with a snapshot, since nothing it read was kept.
//! - Otherwise training resumes from the last version's checkpoint, the serving version
//!   serves at once, the buffer is refilled from the table as it is now (held, not new, not
//!   counted again), every unlabelled row is predicted again (an upsert: still one current
//!   prediction each), and the slot resends what follows its confirmed LSN, of which the
//!   transactions the version already counted are dropped ([`crate::Txns`]).

use std::path::Path;
use tensorcdc_postgres::SlotWait;

use crate::{TrainingBuffer, VersionMeta, Versions};
use anyhow::{Context, Result};
use tensorcdc_dataset::features::cell::change_of_message;
use tensorcdc_dataset::features::{Change, FeatureSpec};
use tensorcdc_model::device_from_env;
use tensorcdc_model::sequential::{checkpoint, SeqPredictor};
use tensorcdc_source::SourceConfig;

use super::predictions::Pending;
use super::train::Start;

/// What a restart carries on from.
pub struct Resumed {
    pub latest: VersionMeta,
    pub spec: FeatureSpec,
    pub start: Start,
    pub serving: Option<(SeqPredictor, u64, FeatureSpec)>,
}

/// Drops `slot` and its offsets file when no version was ever published: the next capture
/// snapshots again. A slot still in use by another process is an error naming its PID, once
/// `wait` has passed (a process killed a moment ago may hold it until the server notices; the
/// caller passes the capture's own wait, `slot.max.retries` x `slot.retry.delay.ms`).
pub async fn reset_slot(client: &tokio_postgres::Client, slot: &str, offsets: &Path, wait: std::time::Duration) -> Result<()> {
    let said = |pid, wait| eprintln!("run: slot {slot:?} is held by server process {pid} (a run killed a moment ago?); waiting up to {wait:?} for it");
    let exists = match tensorcdc_postgres::wait_for_slot(client, slot, wait, said).await? {
        SlotWait::Missing => false,
        SlotWait::Free { .. } => true,
        SlotWait::Busy { pid, .. } => {
            anyhow::bail!("replication slot {slot:?} is in use by another process (PID {pid}): is another tensorcdc run learning from this table?")
        }
    };
    if exists {
        client.execute("SELECT pg_drop_replication_slot($1)", &[&slot]).await.with_context(|| format!("dropping slot {slot}"))?;
        println!("run: no version was published yet; dropped slot {slot} to snapshot again");
    }
    match std::fs::remove_file(offsets) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).with_context(|| offsets.display().to_string()),
        _ => Ok(()),
    }
}

/// The last published version, its trainer, and the serving version's predictor.
pub fn load(versions: &Versions) -> Result<Option<Resumed>> {
    let Some(latest) = versions.latest()? else { return Ok(None) };
    let device = device_from_env()?;
    let (mut meta, trainer) = checkpoint::resume(&versions.path(latest.version), &device)?;
    meta.features.impute_missing = true;
    let serving = match versions.serving()? {
        Some(v) => {
            let (mut m, p) = checkpoint::load(&versions.path(v), &device)?;
            m.features.impute_missing = true;
            Some((p, v, m.features))
        }
        None => None,
    };
    let start = Start { trainer: Some(trainer), serving: serving.as_ref().map(|s| s.0.clone()) };
    Ok(Some(Resumed { latest, spec: meta.features, start, serving }))
}

/// Reads `table` as it is now: labelled rows go back into the buffer, unlabelled rows are
/// returned to be predicted again.
pub async fn refill(cfg: &SourceConfig, url: &str, table: &str, buf: &mut TrainingBuffer) -> Result<Vec<Pending>> {
    let (mut rx, run) = cfg.snapshot(url, table)?;
    let mut unlabelled = Vec::new();
    while let Some(m) = rx.recv().await {
        if let Change::Upsert(r) = change_of_message(&m) {
            if !buf.restore(r.clone()) {
                unlabelled.push(Pending { record: r, position: None, commit_ts_ms: None, snapshot: true });
            }
        }
    }
    run.await??;
    Ok(unlabelled)
}
