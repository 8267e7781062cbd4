//! Model versions in a folder, published atomically:
//!
//! ```text
//! DIR/v000001/        a checkpoint (model.json, model.bpk, optimizer.bpk) and version.json
//! DIR/versions.jsonl  one line per version: number, position covered, examples seen,
//!                     held-out score, whether it served
//! DIR/serving         the number of the serving version
//! ```
//!
//! A version is written into `DIR/.v000001.tmp` and renamed into place, and `serving` is
//! replaced by rename, so a crash leaves either the old or the new state, never half of one.
//! [`Versions::prune`] deletes old checkpoints (not their history lines), so a run that
//! publishes a version every few seconds does not fill the disk.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Score;

/// What `version.json` (and a line of `versions.jsonl`) holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionMeta {
    pub version: u64,
    /// The source position (LSN or topic/partition@offset) whose labelled rows it has seen.
    pub position: String,
    /// Labelled examples trained on, counted once each (an update is a new example).
    pub examples_seen: u64,
    /// The end LSN of the last transaction whose labelled rows it has counted (0: none
    /// streamed yet, only the snapshot). A restart skips transactions up to it.
    #[serde(default)]
    pub ack_lsn: u64,
    pub score: Score,
    /// True when the gate admitted it to serve.
    pub serving: bool,
    pub published_ms: i64,
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct VersionError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> VersionError + '_ {
    move |source| VersionError { path: path.into(), source }
}

/// The versions folder.
#[derive(Debug, Clone)]
pub struct Versions {
    dir: PathBuf,
}

impl Versions {
    pub fn open(dir: &Path) -> Result<Self, VersionError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        Ok(Versions { dir: dir.into() })
    }

    pub fn path(&self, version: u64) -> PathBuf {
        self.dir.join(format!("v{version:06}"))
    }

    /// Every version published, in order (from `versions.jsonl`; a torn last line, left by a
    /// crash while appending, is ignored).
    pub fn history(&self) -> Result<Vec<VersionMeta>, VersionError> {
        let p = self.dir.join("versions.jsonl");
        match std::fs::read_to_string(&p) {
            Ok(t) => Ok(t.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(io(&p)(e)),
        }
    }

    /// The last version published.
    pub fn latest(&self) -> Result<Option<VersionMeta>, VersionError> {
        Ok(self.history()?.into_iter().max_by_key(|m| m.version))
    }

    /// The serving version's number, if one serves. A `serving` file that holds no number
    /// (emptied or edited by hand: tensorcdc replaces it whole) is an error naming it, not a
    /// silent "none serves".
    pub fn serving(&self) -> Result<Option<u64>, VersionError> {
        let p = self.dir.join("serving");
        match std::fs::read_to_string(&p) {
            Ok(t) => t.trim().parse().map(Some).map_err(|_| {
                io(&p)(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("holds {:?}, expected the number of the serving version (remove the file to serve none)", t.trim()),
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&p)(e)),
        }
    }

    /// The next version number.
    pub fn next_number(&self) -> Result<u64, VersionError> {
        Ok(self.history()?.iter().map(|m| m.version).max().unwrap_or(0) + 1)
    }

    /// Publishes a version: `write` fills the folder it is given (the checkpoint), then the
    /// folder is renamed into place, its line appended to the history, and, when
    /// `meta.serving`, the serving pointer moved to it.
    pub fn publish(&self, meta: &VersionMeta, write: impl FnOnce(&Path) -> Result<(), String>) -> Result<PathBuf, String> {
        let tmp = self.dir.join(format!(".v{:06}.tmp", meta.version));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        write(&tmp)?;
        let json = serde_json::to_string(meta).expect("meta serialises");
        std::fs::write(tmp.join("version.json"), &json).map_err(|e| format!("{}: {e}", tmp.display()))?;
        let dest = self.path(meta.version);
        std::fs::rename(&tmp, &dest).map_err(|e| format!("{} -> {}: {e}", tmp.display(), dest.display()))?;
        let hist = self.dir.join("versions.jsonl");
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&hist).map_err(|e| format!("{}: {e}", hist.display()))?;
        writeln!(f, "{json}").and_then(|_| f.sync_all()).map_err(|e| format!("{}: {e}", hist.display()))?;
        if meta.serving {
            let tmp_ptr = self.dir.join(".serving.tmp");
            std::fs::write(&tmp_ptr, meta.version.to_string()).map_err(|e| format!("{}: {e}", tmp_ptr.display()))?;
            std::fs::rename(&tmp_ptr, self.dir.join("serving")).map_err(|e| format!("serving: {e}"))?;
        }
        Ok(dest)
    }

    /// Deletes the checkpoint folders of all but the newest `keep` versions and the serving
    /// one (`keep` 0: deletes none); their lines stay in the history. Returns how many went.
    pub fn prune(&self, keep: usize) -> Result<usize, String> {
        if keep == 0 {
            return Ok(0);
        }
        let serving = self.serving().map_err(|e| e.to_string())?;
        let mut held: Vec<u64> = std::fs::read_dir(&self.dir)
            .map_err(|e| format!("{}: {e}", self.dir.display()))?
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_prefix('v')).and_then(|n| n.parse().ok()))
            .collect();
        held.sort_unstable();
        let old = held.len().saturating_sub(keep);
        let mut gone = 0;
        for v in held.into_iter().take(old).filter(|v| Some(*v) != serving) {
            let p = self.path(v);
            std::fs::remove_dir_all(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            gone += 1;
        }
        Ok(gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(v: u64, serving: bool) -> VersionMeta {
        VersionMeta {
            version: v,
            position: format!("lsn 0/{v}"),
            examples_seen: v * 10,
            ack_lsn: v,
            score: Score { loss: 1.0, accuracy: Some(0.5), rows: 3 },
            serving,
            published_ms: 0,
        }
    }

    #[test]
    fn versions_are_published_whole_and_only_admitted_ones_serve() {
        let d = tempfile::tempdir().unwrap();
        let vs = Versions::open(d.path()).unwrap();
        assert_eq!(vs.next_number().unwrap(), 1);
        vs.publish(&meta(1, true), |p| std::fs::write(p.join("model.bpk"), b"w1").map_err(|e| e.to_string())).unwrap();
        vs.publish(&meta(2, false), |p| std::fs::write(p.join("model.bpk"), b"w2").map_err(|e| e.to_string())).unwrap();
        assert_eq!(vs.serving().unwrap(), Some(1), "a refused version does not serve");
        std::fs::write(d.path().join("serving"), "").unwrap();
        let e = vs.serving().unwrap_err().to_string();
        assert!(e.contains("serving") && e.contains("expected the number of the serving version"), "{e}");
        std::fs::write(d.path().join("serving"), "1\n").unwrap();
        assert_eq!(std::fs::read(vs.path(2).join("model.bpk")).unwrap(), b"w2", "but it is kept");
        assert_eq!(vs.history().unwrap().iter().map(|m| (m.version, m.serving)).collect::<Vec<_>>(), vec![(1, true), (2, false)]);
        // A failed write leaves nothing in place and the history unchanged.
        assert!(vs.publish(&meta(3, true), |_| Err("disk full".into())).is_err());
        assert!(!vs.path(3).exists());
        assert_eq!(vs.serving().unwrap(), Some(1));
        assert_eq!(vs.next_number().unwrap(), 3);
        // A torn last line (a crash while appending) is ignored.
        std::fs::OpenOptions::new().append(true).open(d.path().join("versions.jsonl")).unwrap().write_all(b"{\"version\": 9").unwrap();
        assert_eq!(vs.history().unwrap().len(), 2);
        assert_eq!(vs.latest().unwrap().map(|m| m.version), Some(2));
    }

    #[test]
    fn pruning_keeps_the_newest_and_the_serving_checkpoints_and_the_whole_history() {
        let d = tempfile::tempdir().unwrap();
        let vs = Versions::open(d.path()).unwrap();
        for v in 1..=6 {
            vs.publish(&meta(v, v == 2), |p| std::fs::write(p.join("model.bpk"), b"w").map_err(|e| e.to_string())).unwrap();
        }
        assert_eq!(vs.prune(0).unwrap(), 0, "0 keeps every checkpoint");
        assert_eq!(vs.prune(3).unwrap(), 2, "versions 1 and 3 go");
        let left: Vec<u64> = (1..=6).filter(|v| vs.path(*v).join("model.bpk").is_file()).collect();
        assert_eq!(left, [2, 4, 5, 6], "the serving version and the 3 newest");
        assert_eq!(vs.history().unwrap().len(), 6, "every version's line stays");
        assert_eq!(vs.prune(3).unwrap(), 0);
    }
}
