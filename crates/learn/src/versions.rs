//! Model versions in a folder, published so that no crash point loses or reuses a number:
//!
//! ```text
//! DIR/v000001/        a checkpoint (model.json, model.bpk, optimizer.bpk) and version.json
//! DIR/versions.jsonl  one line per version: number, position covered, examples seen,
//!                     held-out score, whether it served
//! DIR/serving         the number of the serving version
//! ```
//!
//! A version is published in four steps: its checkpoint is written whole into
//! `DIR/.v000001.tmp`; its line is appended to the history (the commit point: from here on
//! the number is taken); the folder is renamed into place; `serving` is replaced by rename.
//! [`Versions::open`] rolls a crash between the steps forward: a version whose line is in
//! the history but whose folder is still `.tmp` is renamed into place, and `serving` is
//! pointed at the last version the history says serves. A crash before the line is appended
//! leaves only a `.tmp` folder, which the next publish of that number replaces. Each step
//! boundary is a failpoint ([`failpoint`]) so tests crash the process exactly there.
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
    /// Of `examples_seen`, the labelled rows that could not be encoded (a NULL feature, a
    /// value of the wrong type), by reason: counted, not trained on.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub skipped: std::collections::BTreeMap<String, u64>,
    /// The end LSN of the last transaction whose labelled rows it has counted (0: none
    /// streamed yet, only the snapshot). A restart skips transactions up to it.
    #[serde(default)]
    pub ack_lsn: u64,
    pub score: Score,
    /// True when the gate admitted it to serve.
    pub serving: bool,
    pub published_ms: i64,
}

/// What went wrong with the versions folder.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: holds {found:?}, expected {expected}")]
    Invalid { path: PathBuf, found: String, expected: &'static str },
    #[error("writing the checkpoint of version {version}: {reason}")]
    Checkpoint { version: u64, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> VersionError + '_ {
    move |source| VersionError::Io { path: path.into(), source }
}

/// Ends the process (as `kill -9` would, without unwinding) when `TENSORCDC_FAILPOINT`
/// names this point: crash tests stop a run between two steps, never by timing.
pub fn failpoint(name: &str) {
    if std::env::var("TENSORCDC_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("failpoint {name}: aborting (TENSORCDC_FAILPOINT)");
        std::process::abort();
    }
}

/// The versions folder.
#[derive(Debug, Clone)]
pub struct Versions {
    dir: PathBuf,
}

impl Versions {
    /// Opens (creates) the folder and finishes a publish a crash interrupted.
    pub fn open(dir: &Path) -> Result<Self, VersionError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let v = Versions { dir: dir.into() };
        v.roll_forward()?;
        Ok(v)
    }

    fn tmp(&self, version: u64) -> PathBuf {
        self.dir.join(format!(".v{version:06}.tmp"))
    }

    /// A version in the history whose folder was not renamed yet is renamed into place; the
    /// serving pointer is set to the last version the history says serves.
    fn roll_forward(&self) -> Result<(), VersionError> {
        // A line cut before its newline (or a torn one): the next line must not be appended
        // onto it.
        let hist = self.dir.join("versions.jsonl");
        match std::fs::read(&hist) {
            Ok(b) if !b.is_empty() && !b.ends_with(b"\n") => {
                let mut f = std::fs::OpenOptions::new().append(true).open(&hist).map_err(io(&hist))?;
                f.write_all(b"\n").and_then(|_| f.sync_all()).map_err(io(&hist))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&hist)(e)),
        }
        let history = self.history()?;
        if let Some(last) = history.last() {
            let (tmp, dest) = (self.tmp(last.version), self.path(last.version));
            if !dest.exists() && tmp.join("version.json").is_file() {
                std::fs::rename(&tmp, &dest).map_err(io(&dest))?;
            }
        }
        if let Some(s) = history.iter().rev().find(|m| m.serving) {
            if self.serving()? != Some(s.version) {
                self.point_serving(s.version)?;
            }
        }
        Ok(())
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
            Ok(t) => t.trim().parse().map(Some).map_err(|_| VersionError::Invalid {
                path: p.clone(),
                found: t.trim().into(),
                expected: "the number of the serving version (remove the file to serve none)",
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&p)(e)),
        }
    }

    /// The next version number: one past the last in the history (a number is taken once its
    /// line is written, and only then).
    pub fn next_number(&self) -> Result<u64, VersionError> {
        Ok(self.history()?.iter().map(|m| m.version).max().unwrap_or(0) + 1)
    }

    fn point_serving(&self, version: u64) -> Result<(), VersionError> {
        let tmp_ptr = self.dir.join(".serving.tmp");
        std::fs::write(&tmp_ptr, version.to_string()).map_err(io(&tmp_ptr))?;
        let ptr = self.dir.join("serving");
        std::fs::rename(&tmp_ptr, &ptr).map_err(io(&ptr))
    }

    /// Publishes a version: `write` fills the folder it is given (the checkpoint), then its
    /// line is appended to the history, the folder renamed into place and, when
    /// `meta.serving`, the serving pointer moved to it.
    pub fn publish<E: std::fmt::Display>(&self, meta: &VersionMeta, write: impl FnOnce(&Path) -> Result<(), E>) -> Result<PathBuf, VersionError> {
        let tmp = self.tmp(meta.version);
        let dest = self.path(meta.version);
        // Left by a crash before its line was written (or by an older tensorcdc that renamed
        // first): never published, so replaced.
        for stale in [&tmp, &dest] {
            match std::fs::remove_dir_all(stale) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(stale)(e)),
                _ => {}
            }
        }
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        write(&tmp).map_err(|e| VersionError::Checkpoint { version: meta.version, reason: e.to_string() })?;
        let json = serde_json::to_string(meta).expect("meta serialises");
        let vj = tmp.join("version.json");
        std::fs::write(&vj, &json).map_err(io(&vj))?;
        failpoint("publish:written");
        let hist = self.dir.join("versions.jsonl");
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&hist).map_err(io(&hist))?;
        // One write: the line and its newline together.
        f.write_all(format!("{json}\n").as_bytes()).and_then(|_| f.sync_all()).map_err(io(&hist))?;
        failpoint("publish:history");
        std::fs::rename(&tmp, &dest).map_err(io(&dest))?;
        failpoint("publish:renamed");
        if meta.serving {
            self.point_serving(meta.version)?;
        }
        Ok(dest)
    }

    /// Deletes the checkpoint folders of all but the newest `keep` versions and the serving
    /// one (`keep` 0: deletes none); their lines stay in the history. Returns how many went.
    pub fn prune(&self, keep: usize) -> Result<usize, VersionError> {
        if keep == 0 {
            return Ok(0);
        }
        let serving = self.serving()?;
        let mut held: Vec<u64> = std::fs::read_dir(&self.dir)
            .map_err(io(&self.dir))?
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_prefix('v')).and_then(|n| n.parse().ok()))
            .collect();
        held.sort_unstable();
        let old = held.len().saturating_sub(keep);
        let mut gone = 0;
        for v in held.into_iter().take(old).filter(|v| Some(*v) != serving) {
            let p = self.path(v);
            std::fs::remove_dir_all(&p).map_err(io(&p))?;
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
            skipped: Default::default(),
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
        vs.publish(&meta(1, true), |p| std::fs::write(p.join("model.bpk"), b"w1")).unwrap();
        vs.publish(&meta(2, false), |p| std::fs::write(p.join("model.bpk"), b"w2")).unwrap();
        assert_eq!(vs.serving().unwrap(), Some(1), "a refused version does not serve");
        std::fs::write(d.path().join("serving"), "").unwrap();
        let e = vs.serving().unwrap_err().to_string();
        assert!(e.contains("serving") && e.contains("expected the number of the serving version"), "{e}");
        std::fs::write(d.path().join("serving"), "1\n").unwrap();
        assert_eq!(std::fs::read(vs.path(2).join("model.bpk")).unwrap(), b"w2", "but it is kept");
        assert_eq!(vs.history().unwrap().iter().map(|m| (m.version, m.serving)).collect::<Vec<_>>(), vec![(1, true), (2, false)]);
        // A failed write leaves nothing in place and the history unchanged.
        assert!(vs.publish(&meta(3, true), |_| Err("disk full")).is_err());
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
            vs.publish(&meta(v, v == 2), |p| std::fs::write(p.join("model.bpk"), b"w")).unwrap();
        }
        assert_eq!(vs.prune(0).unwrap(), 0, "0 keeps every checkpoint");
        assert_eq!(vs.prune(3).unwrap(), 2, "versions 1 and 3 go");
        let left: Vec<u64> = (1..=6).filter(|v| vs.path(*v).join("model.bpk").is_file()).collect();
        assert_eq!(left, [2, 4, 5, 6], "the serving version and the 3 newest");
        assert_eq!(vs.history().unwrap().len(), 6, "every version's line stays");
        assert_eq!(vs.prune(3).unwrap(), 0);
    }

    #[test]
    fn a_publish_cut_between_any_two_steps_is_finished_or_forgotten_and_no_number_is_reused() {
        let d = tempfile::tempdir().unwrap();
        let vs = Versions::open(d.path()).unwrap();
        vs.publish(&meta(1, true), |p| std::fs::write(p.join("model.bpk"), b"w1")).unwrap();
        // Cut after the history line, before the rename: version 2 is published on open.
        let tmp2 = d.path().join(".v000002.tmp");
        std::fs::create_dir_all(&tmp2).unwrap();
        std::fs::write(tmp2.join("model.bpk"), b"w2").unwrap();
        let m2 = meta(2, true);
        std::fs::write(tmp2.join("version.json"), serde_json::to_string(&m2).unwrap()).unwrap();
        let line = format!("{}\n", serde_json::to_string(&m2).unwrap());
        std::fs::OpenOptions::new().append(true).open(d.path().join("versions.jsonl")).unwrap().write_all(line.as_bytes()).unwrap();
        // ... and the serving pointer still says 1.
        let vs = Versions::open(d.path()).unwrap();
        assert_eq!(std::fs::read(vs.path(2).join("model.bpk")).unwrap(), b"w2");
        assert!(!tmp2.exists());
        assert_eq!(vs.serving().unwrap(), Some(2), "the history says version 2 serves");
        assert_eq!(vs.next_number().unwrap(), 3);
        // A folder with no history line (a cut before the line, by an older tensorcdc that
        // renamed first) is replaced by the next publish of its number, not an error.
        std::fs::create_dir_all(vs.path(3)).unwrap();
        std::fs::write(vs.path(3).join("model.bpk"), b"stale").unwrap();
        vs.publish(&meta(3, false), |p| std::fs::write(p.join("model.bpk"), b"w3")).unwrap();
        assert_eq!(std::fs::read(vs.path(3).join("model.bpk")).unwrap(), b"w3");
        assert_eq!(vs.history().unwrap().iter().map(|m| m.version).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(vs.serving().unwrap(), Some(2));
        // Cut after version 4's line but before its newline: version 4 stands, and version
        // 5's line is a line of its own.
        let tmp4 = d.path().join(".v000004.tmp");
        std::fs::create_dir_all(&tmp4).unwrap();
        std::fs::write(tmp4.join("version.json"), serde_json::to_string(&meta(4, false)).unwrap()).unwrap();
        let line = serde_json::to_string(&meta(4, false)).unwrap();
        std::fs::OpenOptions::new().append(true).open(d.path().join("versions.jsonl")).unwrap().write_all(line.as_bytes()).unwrap();
        let vs = Versions::open(d.path()).unwrap();
        assert_eq!(vs.next_number().unwrap(), 5);
        vs.publish(&meta(5, false), |p| std::fs::write(p.join("model.bpk"), b"w5")).unwrap();
        assert_eq!(vs.history().unwrap().iter().map(|m| m.version).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        assert!(vs.path(4).join("version.json").is_file());
    }
}
