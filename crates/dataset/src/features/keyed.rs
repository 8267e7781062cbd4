//! The keyed set of rows a model learns from: an update replaces the row with the same key,
//! a delete removes it, whatever the source (IDX files, in-process capture, Kafka Debezium
//! JSON or CSV). Rows without a key are appended.

use std::collections::HashMap;

use super::{Change, Record};

/// Rows by key, in the order their keys first arrived.
#[derive(Debug, Default)]
pub struct KeyedRecords {
    index: HashMap<String, usize>,
    slots: Vec<Option<Record>>,
    live: usize,
}

impl KeyedRecords {
    /// Applies one change.
    pub fn apply(&mut self, change: Change) {
        match change {
            Change::Upsert(r) => match r.key.clone() {
                Some(k) => match self.index.get(&k) {
                    Some(&i) => {
                        if self.slots[i].is_none() {
                            self.live += 1;
                        }
                        self.slots[i] = Some(r);
                    }
                    None => {
                        self.index.insert(k, self.slots.len());
                        self.slots.push(Some(r));
                        self.live += 1;
                    }
                },
                None => {
                    self.slots.push(Some(r));
                    self.live += 1;
                }
            },
            Change::Delete(k) => {
                if let Some(&i) = self.index.get(&k) {
                    if self.slots[i].take().is_some() {
                        self.live -= 1;
                    }
                }
            }
            Change::Skip => {}
        }
    }

    /// Rows present now.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = &Record> + Clone {
        self.slots.iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::Cell;

    #[test]
    fn updates_replace_and_deletes_remove() {
        let row = |k: &str, x: i64| Change::Upsert(Record { key: Some(k.into()), cells: vec![("x".into(), Cell::Int(x))] });
        let mut set = KeyedRecords::default();
        for i in 0..100 {
            set.apply(row(&i.to_string(), i));
        }
        for i in 0..100 {
            set.apply(row(&i.to_string(), i + 1000));
        }
        for i in 0..50 {
            set.apply(Change::Delete(i.to_string()));
        }
        set.apply(Change::Delete("nope".into()));
        assert_eq!(set.len(), 50);
        let xs: Vec<&Cell> = set.iter().map(|r| r.get("x").unwrap()).collect();
        assert_eq!(xs.first(), Some(&&Cell::Int(1050)));
        set.apply(row("3", 3));
        assert_eq!(set.len(), 51);
    }
}

/// Rows encoded for a model: features row-major, and the targets of the task.
#[derive(Debug, Default)]
pub struct Encoded {
    pub x: Vec<f32>,
    pub width: usize,
    /// Class indices (classification) …
    pub classes: Vec<i64>,
    /// … or values (regression).
    pub values: Vec<f32>,
    /// Rows that gave no example: their key and why.
    pub skipped: Vec<(Option<String>, super::EncodeError)>,
}

impl Encoded {
    pub fn len(&self) -> usize {
        self.x.len().checked_div(self.width).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl super::FeatureSpec {
    /// Encodes every record (features and target); a record that gives no example is
    /// skipped with its key and reason.
    pub fn encode_all<'a>(&self, records: impl Iterator<Item = &'a Record>) -> Encoded {
        let mut e = Encoded { width: self.width(), ..Default::default() };
        for r in records {
            match self.target(r).and_then(|t| self.encode(r, &mut e.x).map(|_| t)) {
                Ok(super::Target::Class(c)) => e.classes.push(c as i64),
                Ok(super::Target::Value(v)) => e.values.push(v),
                Err(err) => e.skipped.push((r.key.clone(), err)),
            }
        }
        e
    }
}
