//! The training buffer: labelled rows by primary key, split into training and held-out rows
//! by a stable hash of the key (FNV-1a, the same on every run and machine).

use std::collections::{BTreeMap, HashMap};

use rand::seq::IteratorRandom;
use tensorcdc_dataset::features::{Change, Record};

/// What one change did to the buffer.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// A labelled row entered the buffer (or replaced its previous version).
    Labelled { key: String, replaced: bool, held_out: bool },
    /// A row without a label: to be predicted (and retracted from the buffer if it was there).
    Unlabelled(Record),
    /// A delete removed a row the buffer held.
    Retracted(String),
    /// Nothing to do (a delete of an unknown key, a truncate, a row without a key).
    Ignored,
}

/// FNV-1a over the key's bytes.
fn fnv1a(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}

/// Labelled rows by key.
#[derive(Debug)]
pub struct TrainingBuffer {
    label: String,
    held_out_percent: u64,
    rows: HashMap<String, Record>,
    /// When each row last changed (a counter): recent rows first in [`TrainingBuffer::recent`].
    seq: HashMap<String, u64>,
    /// Keys by when they last changed, oldest first.
    order: BTreeMap<u64, String>,
    clock: u64,
    /// At most this many rows are held (0: no bound); the least recently changed go first.
    max_rows: usize,
    /// Rows let go to stay within `max_rows`.
    pub evicted: u64,
    /// Training rows changed since the last [`TrainingBuffer::take_new`].
    fresh: Vec<String>,
    /// Labelled changes applied in all (updates count again: each is a new example).
    pub labelled_changes: u64,
}

impl TrainingBuffer {
    /// A buffer for rows whose label is `label`; `held_out_percent` of the keys (by hash)
    /// are held out for scoring versions.
    pub fn new(label: &str, held_out_percent: u8) -> Self {
        TrainingBuffer {
            label: label.into(),
            held_out_percent: held_out_percent.min(100) as u64,
            rows: HashMap::new(),
            seq: HashMap::new(),
            order: BTreeMap::new(),
            clock: 0,
            max_rows: 0,
            evicted: 0,
            fresh: Vec::new(),
            labelled_changes: 0,
        }
    }

    /// Holds at most `n` rows (0: no bound): memory stays flat however long the table grows;
    /// the rows changed least recently are let go first.
    pub fn with_max_rows(mut self, n: usize) -> Self {
        self.max_rows = n;
        self
    }

    /// Holds `r` under `key` as its newest row, letting the oldest go past the bound.
    fn put(&mut self, key: String, r: Record) -> bool {
        self.clock += 1;
        if let Some(old) = self.seq.insert(key.clone(), self.clock) {
            self.order.remove(&old);
        }
        self.order.insert(self.clock, key.clone());
        let replaced = self.rows.insert(key, r).is_some();
        while self.max_rows > 0 && self.rows.len() > self.max_rows {
            let Some((_, k)) = self.order.pop_first() else { break };
            self.seq.remove(&k);
            self.rows.remove(&k);
            self.evicted += 1;
        }
        replaced
    }

    /// Lets the row with `key` go; true when it was held.
    fn drop_key(&mut self, key: &str) -> bool {
        if let Some(s) = self.seq.remove(key) {
            self.order.remove(&s);
        }
        self.rows.remove(key).is_some()
    }

    /// True when the row with this key belongs to the held-out slice.
    pub fn is_held_out(&self, key: &str) -> bool {
        fnv1a(key) % 100 < self.held_out_percent
    }

    /// Applies one change from the stream.
    pub fn apply(&mut self, change: Change) -> Applied {
        match change {
            Change::Upsert(r) => {
                let labelled = r.get(&self.label).is_some_and(|c| !c.is_null());
                let Some(key) = r.key.clone() else {
                    return if labelled { Applied::Ignored } else { Applied::Unlabelled(r) };
                };
                if !labelled {
                    self.drop_key(&key);
                    return Applied::Unlabelled(r);
                }
                let held_out = self.is_held_out(&key);
                let replaced = self.put(key.clone(), r);
                self.labelled_changes += 1;
                if !held_out {
                    self.fresh.push(key.clone());
                }
                Applied::Labelled { key, replaced, held_out }
            }
            Change::Delete(k) => match self.drop_key(&k) {
                true => Applied::Retracted(k),
                false => Applied::Ignored,
            },
            Change::Skip => Applied::Ignored,
        }
    }

    /// Applies a snapshot's read of a row (the initial snapshot or an incremental one). A
    /// read is the row's state, not a change: a row already held that is read again (a
    /// snapshot started over after a reconnect, a chunk read again after a crash) replaces
    /// its example but is neither new nor counted again. Other reads apply as changes.
    pub fn apply_read(&mut self, change: Change) -> Applied {
        if let Change::Upsert(r) = &change {
            let labelled = r.get(&self.label).is_some_and(|c| !c.is_null());
            if let Some(key) = r.key.clone().filter(|k| labelled && self.rows.contains_key(k)) {
                let held_out = self.is_held_out(&key);
                let Change::Upsert(r) = change else { unreachable!("matched above") };
                self.put(key.clone(), r);
                return Applied::Labelled { key, replaced: true, held_out };
            }
        }
        self.apply(change)
    }

    /// Puts a row back after a restart (read from the table as it is now): held, but not
    /// new and not counted, since the published version already counted it. Returns true
    /// when it was a labelled row.
    pub fn restore(&mut self, r: Record) -> bool {
        let labelled = r.get(&self.label).is_some_and(|c| !c.is_null());
        match r.key.clone() {
            Some(key) if labelled => {
                self.put(key, r);
                true
            }
            _ => false,
        }
    }

    /// Labelled rows held now.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The row with this key, if the buffer holds it.
    pub fn get(&self, key: &str) -> Option<&Record> {
        self.rows.get(key)
    }

    /// Training rows (not held out).
    pub fn training(&self) -> impl Iterator<Item = &Record> + Clone {
        self.rows.iter().filter(|(k, _)| !self.is_held_out(k)).map(|(_, r)| r)
    }

    /// Held-out rows.
    pub fn held_out(&self) -> impl Iterator<Item = &Record> + Clone {
        self.rows.iter().filter(|(k, _)| self.is_held_out(k)).map(|(_, r)| r)
    }

    /// Training rows that arrived or changed since the last call (each once, as it is now;
    /// rows deleted since are left out).
    pub fn take_new(&mut self) -> Vec<Record> {
        let mut keys = std::mem::take(&mut self.fresh);
        keys.sort();
        keys.dedup();
        keys.iter().filter_map(|k| self.rows.get(k).cloned()).collect()
    }

    /// Training rows that arrived or changed since the last [`TrainingBuffer::take_new`].
    pub fn new_count(&self) -> usize {
        self.fresh.len()
    }

    /// Up to `n` training rows chosen at random (the replay sample mixed with new rows),
    /// from the `window` most recently changed ones (0: from all).
    pub fn replay(&self, n: usize, window: usize, rng: &mut impl rand::Rng) -> Vec<&Record> {
        if window == 0 {
            return self.training().choose_multiple(rng, n);
        }
        self.recent(false, window).into_iter().choose_multiple(rng, n)
    }

    /// The `n` most recently changed held-out rows (`held_out`) or training rows, newest
    /// first: when the data drifts, versions are scored on what the table says now.
    pub fn recent(&self, held_out: bool, n: usize) -> Vec<&Record> {
        self.order.values().rev().filter(|k| self.is_held_out(k) == held_out).filter_map(|k| self.rows.get(k)).take(n).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use tensorcdc_dataset::features::Cell;

    fn row(key: i64, x: f64, label: Option<i64>) -> Change {
        Change::Upsert(Record {
            key: Some(key.to_string()),
            cells: vec![("id".into(), Cell::Int(key)), ("x".into(), Cell::Number(x)), ("y".into(), label.map_or(Cell::Null, Cell::Int))],
        })
    }

    #[test]
    fn an_update_replaces_and_a_delete_retracts() {
        let mut b = TrainingBuffer::new("y", 0);
        assert!(matches!(b.apply(row(1, 0.5, Some(1))), Applied::Labelled { replaced: false, .. }));
        assert!(matches!(b.apply(row(1, 0.7, Some(0))), Applied::Labelled { replaced: true, .. }));
        assert_eq!(b.len(), 1);
        assert_eq!(b.get("1").and_then(|r| r.get("x")), Some(&Cell::Number(0.7)));
        // Both versions were new examples, but the row is taken once, as it is now.
        let new = b.take_new();
        assert_eq!(new.len(), 1);
        assert_eq!(new[0].get("y"), Some(&Cell::Int(0)));
        assert!(b.take_new().is_empty());
        assert_eq!(b.apply(Change::Delete("1".into())), Applied::Retracted("1".into()));
        assert!(b.is_empty());
        assert_eq!(b.apply(Change::Delete("1".into())), Applied::Ignored);
        assert_eq!(b.labelled_changes, 2);
    }

    #[test]
    fn a_row_read_again_is_not_counted_again() {
        let mut b = TrainingBuffer::new("y", 0);
        b.apply_read(row(1, 0.5, Some(1)));
        b.apply_read(row(2, 0.5, Some(0)));
        assert_eq!((b.len(), b.new_count(), b.labelled_changes), (2, 2, 2));
        // The snapshot starts over: the same rows, one of them changed meanwhile.
        b.apply_read(row(1, 0.5, Some(1)));
        b.apply_read(row(2, 0.7, Some(1)));
        assert_eq!((b.len(), b.new_count(), b.labelled_changes), (2, 2, 2));
        assert_eq!(b.get("2").unwrap().get("x").and_then(|c| c.as_f64()), Some(0.7), "the newer read replaces the example");
        // A read of a row not held counts; a streamed change of a held row counts.
        b.apply_read(row(3, 0.1, Some(0)));
        b.apply(row(1, 0.9, Some(0)));
        assert_eq!(b.labelled_changes, 4);
    }

    #[test]
    fn restored_rows_are_held_but_neither_new_nor_counted() {
        let mut b = TrainingBuffer::new("y", 0);
        let Change::Upsert(r) = row(1, 0.5, Some(1)) else { unreachable!() };
        assert!(b.restore(r));
        let Change::Upsert(r) = row(2, 0.5, None) else { unreachable!() };
        assert!(!b.restore(r), "an unlabelled row is not held");
        assert_eq!((b.len(), b.new_count(), b.labelled_changes), (1, 0, 0));
        assert_eq!(b.training().count(), 1, "it is replayed with new rows");
        // The stream's later change of the same row is a new example.
        b.apply(row(1, 0.9, Some(0)));
        assert_eq!((b.len(), b.new_count(), b.labelled_changes), (1, 1, 1));
    }

    #[test]
    fn a_bounded_buffer_lets_the_least_recently_changed_rows_go() {
        let mut b = TrainingBuffer::new("y", 0).with_max_rows(3);
        for k in 1..=3 {
            b.apply(row(k, 0.0, Some(1)));
        }
        b.apply(row(1, 0.5, Some(0))); // row 1 is now the newest
        b.apply(row(4, 0.0, Some(1)));
        assert_eq!(b.len(), 3);
        assert_eq!(b.evicted, 1);
        assert!(b.get("2").is_none(), "row 2 changed least recently");
        assert!(b.get("1").is_some() && b.get("3").is_some() && b.get("4").is_some());
        assert_eq!(b.recent(false, 3).iter().map(|r| r.key.clone().unwrap()).collect::<Vec<_>>(), ["4", "1", "3"]);
        // An evicted row was counted when it came; a new version of it comes back.
        assert_eq!(b.labelled_changes, 5);
        b.apply(row(2, 0.0, Some(1)));
        assert!(b.get("2").is_some() && b.get("3").is_none());
    }

    #[test]
    fn a_label_set_to_null_retracts_and_asks_for_a_prediction() {
        let mut b = TrainingBuffer::new("y", 0);
        b.apply(row(4, 1.0, Some(1)));
        assert!(matches!(b.apply(row(4, 1.0, None)), Applied::Unlabelled(_)));
        assert!(b.is_empty());
        // A deleted row that was retracted before changes nothing more.
        assert_eq!(b.apply(Change::Delete("4".into())), Applied::Ignored);
    }

    #[test]
    fn the_held_out_slice_is_stable_and_near_its_share() {
        let mut b = TrainingBuffer::new("y", 20);
        for k in 0..5000 {
            b.apply(row(k, 0.0, Some(k % 2)));
        }
        let held = b.held_out().count();
        assert!((800..1200).contains(&held), "{held} of 5000 held out at 20%");
        assert_eq!(b.training().count() + held, 5000);
        // The split depends on the key alone: an update never moves a row across it.
        let before: Vec<bool> = (0..100).map(|k| b.is_held_out(&k.to_string())).collect();
        for k in 0..100 {
            b.apply(row(k, 9.0, Some(1)));
        }
        assert_eq!(before, (0..100).map(|k| b.is_held_out(&k.to_string())).collect::<Vec<_>>());
        // New rows to train on exclude the held-out ones.
        assert!(b.take_new().iter().all(|r| !b.is_held_out(r.key.as_deref().unwrap())));
        assert_eq!(fnv1a("a"), 0xaf63dc4c8601ec8c, "FNV-1a test vector");
    }

    #[test]
    fn replay_draws_only_training_rows() {
        let mut b = TrainingBuffer::new("y", 50);
        for k in 0..200 {
            b.apply(row(k, 0.0, Some(1)));
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let s = b.replay(30, 0, &mut rng);
        assert_eq!(s.len(), 30);
        assert!(s.iter().all(|r| !b.is_held_out(r.key.as_deref().unwrap())));
        // From a window of the newest: the 10 training rows changed last.
        let newest: Vec<String> = b.recent(false, 10).iter().map(|r| r.key.clone().unwrap()).collect();
        assert_eq!(newest.len(), 10);
        let keys: Vec<i64> = newest.iter().map(|k| k.parse().unwrap()).collect();
        assert!(keys.windows(2).all(|w| w[0] > w[1]) && keys[0] >= 190, "newest first: {keys:?}");
        let s = b.replay(30, 10, &mut rng);
        assert_eq!(s.len(), 10);
        assert!(s.iter().all(|r| newest.contains(r.key.as_ref().unwrap())));
        b.apply(row(newest[9].parse().unwrap(), 1.0, Some(0)));
        assert_eq!(b.recent(false, 1)[0].key, Some(newest[9].clone()), "an update makes a row the newest");
    }
}
