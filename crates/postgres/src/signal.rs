//! Debezium's source signalling channel: rows inserted into the signal table
//! (`signal.data.collection`, columns `id`, `type`, `data`) read from the stream, and the
//! settings of the incremental snapshot they start (`incremental.snapshot.chunk.size`).
//!
//! Signals understood: `execute-snapshot` (`data-collections`, `type` incremental,
//! `additional-conditions`), `stop-snapshot`, and the watermarks the capture writes itself
//! (`snapshot-window-open`, `snapshot-window-close`). Other types are named in a warning.

use serde_json::Value as J;

use crate::SettingError;

/// The signal settings of a capture.
#[derive(Debug, Clone)]
pub struct SignalSettings {
    /// `signal.data.collection`: the signal table as `schema.table`.
    pub data_collection: Option<(String, String)>,
    /// `signal.enabled.channels` names `source` (the default).
    pub source_channel: bool,
    /// `incremental.snapshot.chunk.size` (Debezium's default 1024).
    pub chunk_size: usize,
    /// `tensorcdc.snapshot.incremental`: a new slot's initial snapshot of the included tables
    /// is an incremental one (Debezium's `snapshot.mode=no_data` followed by an
    /// `execute-snapshot` signal, without a window between them in which to send it).
    pub initial: bool,
}

impl Default for SignalSettings {
    fn default() -> Self {
        SignalSettings { data_collection: None, source_channel: true, chunk_size: 1024, initial: false }
    }
}

impl SignalSettings {
    /// Takes one connector property when it is a signal setting: `Ok(true)` when taken,
    /// `Err` naming what was expected when its value is wrong.
    pub fn set(&mut self, key: &str, v: &str) -> Result<bool, SettingError> {
        match key {
            "signal.data.collection" => {
                let parts: Vec<&str> = v.split('.').collect();
                let (s, t) = match parts.as_slice() {
                    [t] => ("public", *t),
                    [s, t] => (*s, *t),
                    // Debezium 1.x wrote the database in front for some connectors.
                    [_, s, t] => (*s, *t),
                    _ => return Err(SettingError::value(v, "schema.table")),
                };
                if s.is_empty() || t.is_empty() {
                    return Err(SettingError::value(v, "schema.table"));
                }
                self.data_collection = Some((s.to_string(), t.to_string()));
            }
            "signal.enabled.channels" => self.source_channel = v.split(',').any(|c| c.trim() == "source"),
            "incremental.snapshot.chunk.size" => {
                self.chunk_size = v.parse().ok().filter(|n| *n > 0).ok_or_else(|| SettingError::value(v, "a positive number of rows"))?
            }
            "tensorcdc.snapshot.incremental" => {
                self.initial = match v {
                    "true" => true,
                    "false" => false,
                    o => return Err(SettingError::value(o, "true or false")),
                }
            }
            "incremental.snapshot.watermarking.strategy" => {
                if v != "insert_insert" {
                    return Err(SettingError::Unsupported {
                        value: v.into(),
                        why: "tensorcdc writes both watermarks (insert_insert); insert_delete is not supported",
                    });
                }
            }
            "read.only" => {
                if v == "true" {
                    return Err(SettingError::Unsupported {
                        value: v.into(),
                        why: "incremental snapshots without writing watermarks (read-only replicas) are not supported; \
                              the capture writes them to signal.data.collection on the primary",
                    });
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The signal table when signals are read from the source.
    pub fn table(&self) -> Option<(&str, &str)> {
        self.data_collection.as_ref().filter(|_| self.source_channel).map(|(s, t)| (s.as_str(), t.as_str()))
    }
}

/// One signal, as the row inserted into the signal table asks.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// Snapshot these collections (regular expressions over `schema.table`), each with its
    /// extra `WHERE` condition when given.
    ExecuteSnapshot {
        collections: Vec<String>,
        conditions: Vec<(String, String)>,
    },
    /// Stop the incremental snapshot of these collections (all of them when empty).
    StopSnapshot {
        collections: Vec<String>,
    },
    /// Our watermarks: the chunk id.
    WindowOpen(String),
    WindowClose(String),
    /// A signal tensorcdc does not act on (its type, and why).
    Ignored(String),
}

pub const WINDOW_OPEN: &str = "snapshot-window-open";
pub const WINDOW_CLOSE: &str = "snapshot-window-close";

fn strings(v: Option<&J>) -> Vec<String> {
    match v {
        Some(J::Array(a)) => a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect(),
        Some(J::String(s)) => vec![s.clone()],
        _ => vec![],
    }
}

/// A signal row that cannot be read; the capture says it and goes on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SignalError {
    #[error("signal {id:?} ({kind}): data is not JSON: {reason}")]
    NotJson { id: String, kind: String, reason: String },
    #[error("signal {id:?} (execute-snapshot): data names no \"data-collections\"")]
    NoCollections { id: String },
    #[error("signal {id:?}: each additional-conditions entry needs \"data-collection\" and \"filter\", got {entry}")]
    BadCondition { id: String, entry: String },
}

/// Reads a signal row. A malformed `data` is an error naming the signal's id.
pub fn parse(id: &str, kind: &str, data: Option<&str>) -> Result<Signal, SignalError> {
    let data: J = match data.map(str::trim).filter(|d| !d.is_empty()) {
        Some(d) => serde_json::from_str(d).map_err(|e| SignalError::NotJson { id: id.into(), kind: kind.into(), reason: e.to_string() })?,
        None => J::Null,
    };
    let snapshot_type = data.get("type").and_then(J::as_str).unwrap_or("incremental").to_ascii_lowercase();
    Ok(match kind {
        "execute-snapshot" => {
            if snapshot_type != "incremental" {
                return Ok(Signal::Ignored(format!("execute-snapshot of type {snapshot_type:?}: tensorcdc runs incremental snapshots only")));
            }
            let collections = strings(data.get("data-collections"));
            if collections.is_empty() {
                return Err(SignalError::NoCollections { id: id.into() });
            }
            let mut conditions = Vec::new();
            if let Some(J::Array(list)) = data.get("additional-conditions") {
                for c in list {
                    let (Some(dc), Some(f)) = (c.get("data-collection").and_then(J::as_str), c.get("filter").and_then(J::as_str)) else {
                        return Err(SignalError::BadCondition { id: id.into(), entry: c.to_string() });
                    };
                    conditions.push((dc.to_string(), f.to_string()));
                }
            }
            // Debezium 1.x/2.0's single condition for every collection.
            if let Some(f) = data.get("additional-condition").and_then(J::as_str).filter(|f| !f.trim().is_empty()) {
                for c in &collections {
                    conditions.push((c.clone(), f.to_string()));
                }
            }
            Signal::ExecuteSnapshot { collections, conditions }
        }
        "stop-snapshot" => {
            if snapshot_type != "incremental" {
                return Ok(Signal::Ignored(format!("stop-snapshot of type {snapshot_type:?}")));
            }
            Signal::StopSnapshot { collections: strings(data.get("data-collections")) }
        }
        WINDOW_OPEN => Signal::WindowOpen(id.strip_suffix("-open").unwrap_or(id).to_string()),
        WINDOW_CLOSE => Signal::WindowClose(id.strip_suffix("-close").unwrap_or(id).to_string()),
        other => Signal::Ignored(format!("signal type {other:?} is not one tensorcdc acts on (execute-snapshot, stop-snapshot)")),
    })
}

/// Whether a `data-collections` entry (a regular expression, as Debezium's) names `schema.table`.
pub fn names(pattern: &str, schema: &str, table: &str) -> bool {
    let full = format!("{schema}.{table}");
    match regex::Regex::new(&format!("^(?:{pattern})$")) {
        Ok(re) => re.is_match(&full),
        Err(_) => pattern == full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debeziums_signals() {
        let s = parse("ad-hoc-1", "execute-snapshot", Some(r#"{"data-collections": ["public.a", "public.b"], "type": "incremental"}"#)).unwrap();
        assert_eq!(s, Signal::ExecuteSnapshot { collections: vec!["public.a".into(), "public.b".into()], conditions: vec![] });
        let s = parse(
            "x",
            "execute-snapshot",
            Some(r#"{"data-collections": ["public.a"], "additional-conditions": [{"data-collection": "public.a", "filter": "color = 'blue'"}]}"#),
        )
        .unwrap();
        assert_eq!(s, Signal::ExecuteSnapshot { collections: vec!["public.a".into()], conditions: vec![("public.a".into(), "color = 'blue'".into())] });
        assert_eq!(parse("y", "stop-snapshot", Some(r#"{"type": "INCREMENTAL"}"#)).unwrap(), Signal::StopSnapshot { collections: vec![] });
        assert_eq!(parse("c1-open", WINDOW_OPEN, None).unwrap(), Signal::WindowOpen("c1".into()));
        assert_eq!(parse("c1-close", WINDOW_CLOSE, Some("{}")).unwrap(), Signal::WindowClose("c1".into()));
        assert!(matches!(parse("z", "execute-snapshot", Some(r#"{"data-collections": ["a"], "type": "blocking"}"#)).unwrap(), Signal::Ignored(_)));
        assert!(matches!(parse("z", "log", None).unwrap(), Signal::Ignored(_)));
        let e = parse("bad-1", "execute-snapshot", Some("{not json")).unwrap_err();
        assert!(matches!(&e, SignalError::NotJson { id, .. } if id == "bad-1"), "{e}");
        assert!(e.to_string().contains("bad-1"), "{e}");
        assert_eq!(parse("bad-2", "execute-snapshot", Some("{}")).unwrap_err(), SignalError::NoCollections { id: "bad-2".into() });
        assert!(names("public.mnist_.*", "public", "mnist_train"));
        assert!(!names("public.a", "public", "ab"));
    }

    #[test]
    fn settings() {
        let mut s = SignalSettings::default();
        assert!(s.set("signal.data.collection", "public.debezium_signal").unwrap());
        assert_eq!(s.table(), Some(("public", "debezium_signal")));
        assert!(s.set("incremental.snapshot.chunk.size", "0").is_err());
        assert!(s.set("read.only", "true").is_err());
        assert!(!s.set("snapshot.mode", "initial").unwrap());
        s.set("signal.enabled.channels", "kafka").unwrap();
        assert_eq!(s.table(), None);
    }
}
