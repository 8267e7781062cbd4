//! The offsets file: what a restart of the capture must know that the slot does not keep.
//!
//! * whether the initial snapshot of the slot completed (a capture killed during it redoes it);
//! * the incremental snapshot in progress ([`Progress`]: the tables still to read, the last
//!   key delivered, the largest key), written only once the chunk it describes is durable in
//!   the sink, so a restart resumes at the next chunk and never skips an undelivered one;
//! * the WAL position of the last signal acted on, so signals the slot sends again after a
//!   restart (it resends from `confirmed_flush_lsn`) are not acted on twice.
//!
//! It is `offset.storage.file.filename` when given, else a file per server, database and slot
//! in `$TENSORCDC_STATE_DIR` (default `$XDG_STATE_HOME/tensorcdc` or
//! `~/.local/state/tensorcdc`). Writes are durable: temporary file, fsync, rename.

use tracing::warn;

use crate::config::CaptureConfig;
use crate::incremental::Progress;
use crate::CaptureError;

#[derive(serde::Serialize, serde::Deserialize, Default, Clone, Debug, PartialEq)]
pub struct Offsets {
    pub slot: String,
    pub snapshot_completed: bool,
    /// The incremental snapshot still to do (Debezium keeps the same in its offsets as
    /// `incremental_snapshot_collections` / `_primary_key` / `_maximum_key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental: Option<Progress>,
    /// WAL position (as a number) of the last signal acted on.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub last_signal_lsn: u64,
    /// Its own record's position (signals of one transaction share the commit's).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub last_signal_rec: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Offsets {
    /// The offsets of a slot whose initial snapshot is (or is not yet) complete, with no
    /// incremental snapshot: what a new slot starts from.
    pub fn fresh(cfg: &CaptureConfig, completed: bool) -> Offsets {
        Offsets { slot: cfg.slot_name.clone(), snapshot_completed: completed, ..Default::default() }
    }
}

/// Where the offsets of this capture are kept (none for a temporary slot: it cannot
/// outlive the session whose snapshot it would describe).
pub fn offsets_path(cfg: &CaptureConfig) -> Option<std::path::PathBuf> {
    if let Some(p) = &cfg.offset_file {
        return Some(p.clone());
    }
    if cfg.temporary_slot {
        return None;
    }
    let dir = std::env::var_os("TENSORCDC_STATE_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("XDG_STATE_HOME").map(|d| std::path::PathBuf::from(d).join("tensorcdc")))
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".local/state/tensorcdc")))
        .unwrap_or_else(|| std::env::temp_dir().join("tensorcdc-state"));
    let host: String = cfg.host.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' }).collect();
    Some(dir.join(format!("offsets-{host}-{}-{}-{}.json", cfg.port, cfg.dbname, cfg.slot_name)))
}

/// The offsets of this capture; `Ok(None)` when there are none yet. A file that exists but
/// cannot be read or parsed is an error naming it: guessing would redo or skip a snapshot.
pub fn read_offsets(cfg: &CaptureConfig) -> Result<Option<Offsets>, CaptureError> {
    let Some(path) = offsets_path(cfg) else {
        return Ok(None);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CaptureError::Config { key: "offset.storage.file.filename".into(), reason: format!("{}: {e}", path.display()) }),
    };
    serde_json::from_str(&text).map(Some).map_err(|e| CaptureError::Config {
        key: "offset.storage.file.filename".into(),
        reason: format!("{}: not an offsets file of tensorcdc ({e}); move it away to start over", path.display()),
    })
}

/// Forgets the offsets of a slot tensorcdc dropped itself (`slot.drop.on.stop`, an
/// `initial_only` read): its absence then means nothing was lost.
pub fn remove_offsets(cfg: &CaptureConfig) {
    if let Some(path) = offsets_path(cfg) {
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                warn!("removing {} after dropping slot {}: {e}", path.display(), cfg.slot_name);
            }
        }
    }
}

/// Writes the offsets durably (temporary file, fsync, rename).
pub fn write_offsets(cfg: &CaptureConfig, o: &Offsets) -> Result<(), CaptureError> {
    use std::io::Write;
    let Some(path) = offsets_path(cfg) else {
        return Ok(());
    };
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(o).expect("serialises"))?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| CaptureError::Config { key: "offset.storage.file.filename".into(), reason: format!("{}: {e}", path.display()) })
}
