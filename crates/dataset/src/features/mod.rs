//! Features from any columns: the feature spec, fitted on training rows and kept in
//! checkpoints, that turns a [`Record`] of any source into a `f32` feature vector and a target.
//!
//! | column kind | from | encoding |
//! |---|---|---|
//! | number | integers, floats, decimals, dates and times (Debezium's numbers) | scaled: `standard` (mean and deviation of the training rows), `minmax`, or `none` |
//! | boolean | booleans | 0 / 1 |
//! | category | text, varchar, enums | one-hot over the training vocabulary, plus one slot for values never seen |
//! | bytes | bytea | one feature per byte, divided by 255 (the MNIST case) |
//! | array | one-dimensional numeric arrays of fixed length | one feature per element |
//!
//! NULLs: [`Nulls::Skip`] (the row is skipped and counted) or [`Nulls::Impute`] (the training
//! mean, per element for bytes and arrays, or the most frequent value). The label makes the
//! task: classes from integers, text and booleans (names kept), regression from other numbers;
//! [`SpecOptions::task`] overrides. [`FeatureSpec::mnist`] is the blog's table as a preset.
//!
//! * [`cell`]: cells and records from typed rows and Debezium JSON, and the change a record
//!   stands for.
//! * [`keyed`]: the keyed set: an update replaces the row with its key, a delete removes it.
//! * `kinds`: the column kinds, scaling, NULL policy and task, with their flag names.

pub mod cell;
pub mod keyed;
mod kinds;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use cell::{Cell, Change, Record};
pub use keyed::{Encoded, KeyedRecords};
pub use kinds::{Kind, Nulls, Scaling, Task};

/// What to learn from: the label, the features (default: every column but the key columns
/// and the label), and how to encode them.
#[derive(Debug, Clone, Default)]
pub struct SpecOptions {
    pub label: String,
    pub features: Option<Vec<String>>,
    /// Columns never used as features by default (the primary key).
    pub exclude: Vec<String>,
    pub scaling: Scaling,
    pub nulls: Nulls,
    pub task: Option<Task>,
}

/// One feature column, fitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    pub kind: Kind,
    /// Features it makes.
    pub width: usize,
    /// Numbers: `(x - shift) / scale`.
    #[serde(default)]
    pub shift: f64,
    #[serde(default = "one")]
    pub scale: f64,
    /// Categories: the training vocabulary (sorted); the last slot is for the unseen.
    #[serde(default)]
    pub vocab: Vec<String>,
    /// The encoded features a NULL gets when imputing.
    pub impute: Vec<f32>,
    /// A NULL is imputed even under [`Nulls::Skip`]: a column added to the table while
    /// `tensorcdc run` ran (rows from before it have none).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub impute_null: bool,
}

fn one() -> f64 {
    1.0
}

/// The fitted spec: columns, label, task, class names, NULL policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    pub columns: Vec<Column>,
    pub label: String,
    pub task: Task,
    /// Class names in output order (classification).
    #[serde(default)]
    pub classes: Vec<String>,
    pub scaling: Scaling,
    pub nulls: Nulls,
    /// A feature column missing from a record (dropped or renamed in the table since the
    /// spec was fitted, or added after a record was read) is imputed from the training
    /// statistics instead of failing the record. `tensorcdc run` sets it: serving goes on
    /// while the table changes. Not saved: a checkpoint read elsewhere is strict.
    #[serde(skip)]
    pub impute_missing: bool,
}

/// A training target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    Class(usize),
    Value(f32),
}

/// Why a record gives no example.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    #[error("column {0:?} is NULL")]
    Null(String),
    #[error("no column {0:?}")]
    Missing(String),
    #[error("column {column:?}: expected {expected}, got {got}")]
    Kind { column: String, expected: String, got: String },
    #[error("label {0:?} is not one of the classes seen in training")]
    UnknownClass(String),
    /// An unchanged TOASTed value the change did not carry (Debezium's placeholder).
    #[error("column {0:?} is an unchanged TOASTed value the change left out (and no earlier value of the row was at hand)")]
    Unavailable(String),
}

impl EncodeError {
    /// True for a NULL (counted and skipped under [`Nulls::Skip`]).
    pub fn is_null(&self) -> bool {
        matches!(self, EncodeError::Null(_))
    }

    /// The reason without the row's own value: what skipped rows are counted by.
    pub fn reason(&self) -> String {
        match self {
            EncodeError::Null(c) => format!("column {c:?} is NULL"),
            EncodeError::Missing(c) => format!("no column {c:?}"),
            EncodeError::Kind { column, expected, .. } => format!("column {column:?} is not {expected}"),
            EncodeError::UnknownClass(_) => "a label not among the classes seen in training".into(),
            EncodeError::Unavailable(c) => format!("column {c:?} is an unchanged TOASTed value left out"),
        }
    }
}

fn describe(c: &Cell) -> String {
    match c {
        Cell::Null => "NULL".into(),
        Cell::Bool(b) => format!("boolean {b}"),
        Cell::Int(i) => format!("integer {i}"),
        Cell::Number(x) => format!("number {x}"),
        Cell::Text(t) => format!("text {t:?}"),
        Cell::Bytes(b) => format!("{} bytes", b.len()),
        Cell::Array(a) => format!("an array of {}", a.len()),
    }
}

/// Bytes of a cell: bytes as they are, text as base64 or hex (JSON without schemas).
fn bytes_of(c: &Cell) -> Option<std::borrow::Cow<'_, [u8]>> {
    match c {
        Cell::Bytes(b) => Some(std::borrow::Cow::Borrowed(b)),
        Cell::Text(t) => tensorcdc_change::json::decode_binary(t, None, None).ok().map(std::borrow::Cow::Owned),
        _ => None,
    }
}

fn number_of(c: &Cell) -> Option<f64> {
    match c {
        Cell::Text(t) => t.trim().parse().ok(),
        other => other.as_f64(),
    }
}

/// Debezium's placeholder for an unchanged TOASTed value (in-process too): not a value.
pub fn is_unavailable(c: &Cell) -> bool {
    matches!(c, Cell::Text(t) if t == tensorcdc_change::json::UNAVAILABLE)
}

/// NaN and infinities carry no number to learn from: they count as NULL.
fn is_missing(c: &Cell) -> bool {
    match c {
        Cell::Null => true,
        Cell::Number(x) => !x.is_finite(),
        _ => false,
    }
}

fn column_kind(c: &Cell) -> Option<(Kind, usize)> {
    Some(match c {
        Cell::Null => return None,
        Cell::Bool(_) => (Kind::Boolean, 1),
        Cell::Int(_) | Cell::Number(_) => (Kind::Number, 1),
        Cell::Text(_) => (Kind::Category, 0),
        Cell::Bytes(b) => (Kind::Bytes, b.len()),
        Cell::Array(a) => (Kind::Array, a.len()),
    })
}

fn most_frequent<'a>(values: impl Iterator<Item = &'a str>) -> Option<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for v in values {
        *counts.entry(v).or_default() += 1;
    }
    counts.into_iter().max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0))).map(|(v, _)| v.to_string())
}

/// From this many labelled rows on, a label with a different value in every row is refused.
const UNIQUE_LABEL_ROWS: usize = 20;

/// Why a spec could not be fitted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    /// The options do not fit the rows' columns (no such label column, no feature left), or a
    /// column's values disagree (arrays of different lengths): more rows will not help.
    #[error("{0}")]
    Invalid(String),
    /// The rows so far are too few to fit a spec: none yet, a column NULL in every one, or a
    /// single class. More rows may fix it (a stream waits for them).
    #[error("{0}")]
    TooFewRows(String),
}

impl FitError {
    /// Whether more rows may fix it.
    pub fn needs_more_rows(&self) -> bool {
        matches!(self, FitError::TooFewRows(_))
    }
}

impl FeatureSpec {
    /// The blog's table: the label `label` (classes 0..9) and `pixels`, 784 bytes.
    pub fn mnist() -> FeatureSpec {
        FeatureSpec {
            columns: vec![Column {
                name: "pixels".into(),
                kind: Kind::Bytes,
                width: crate::PIXELS,
                shift: 0.0,
                scale: 1.0,
                vocab: vec![],
                impute: vec![0.0; crate::PIXELS],
                impute_null: false,
            }],
            label: "label".into(),
            task: Task::Classification,
            classes: (0..10).map(|d: u8| d.to_string()).collect(),
            scaling: Scaling::None,
            nulls: Nulls::Skip,
            impute_missing: false,
        }
    }

    /// Fits the spec on training records: kinds from the first non-NULL value of each
    /// column, scaling statistics, vocabularies, NULL imputations, the task and its classes.
    pub fn fit<'a>(records: impl Iterator<Item = &'a Record> + Clone, opts: &SpecOptions) -> Result<FeatureSpec, FitError> {
        let first = records.clone().next().ok_or_else(|| FitError::TooFewRows("no rows to learn from".into()))?;
        if first.get(&opts.label).is_none() {
            let names: Vec<&str> = first.cells.iter().map(|(n, _)| n.as_str()).collect();
            return Err(FitError::Invalid(format!("no label column {:?} (columns: {})", opts.label, names.join(", "))));
        }
        let names: Vec<String> = match &opts.features {
            Some(f) => f.clone(),
            // Debezium's added fields (`__op`, `__deleted`, `__lsn`, ...) are not features.
            None => first.cells.iter().map(|(n, _)| n.clone()).filter(|n| *n != opts.label && !opts.exclude.contains(n) && !n.starts_with("__")).collect(),
        };
        // A named feature may be missing from older rows (a column added since): it must be in
        // some row.
        if let Some(n) = names.iter().find(|n| first.get(n).is_none() && !records.clone().any(|r| r.get(n).is_some())) {
            let have: Vec<&str> = first.cells.iter().map(|(n, _)| n.as_str()).collect();
            return Err(FitError::Invalid(format!("no feature column {n:?} (columns: {})", have.join(", "))));
        }
        if names.is_empty() {
            return Err(FitError::Invalid(format!("no feature columns (every column is the label {:?} or the key)", opts.label)));
        }
        let mut columns = Vec::new();
        for name in &names {
            let cells: Vec<&Cell> = records.clone().filter_map(|r| r.get(name)).filter(|c| !c.is_null()).collect();
            let Some((kind, width)) = cells.first().and_then(|c| column_kind(c)) else {
                return Err(FitError::TooFewRows(format!("column {name:?} is NULL in every row (or missing)")));
            };
            columns.push(fit_column(name, kind, width, &cells, opts.scaling)?);
        }
        let labels: Vec<&Cell> = records.clone().filter_map(|r| r.get(&opts.label)).filter(|c| !c.is_null()).collect();
        if let Some(c @ (Cell::Array(_) | Cell::Bytes(_))) = labels.first() {
            return Err(FitError::Invalid(format!(
                "label {:?} holds {}: a label must be a number (a target), or an integer, boolean or text (a class)",
                opts.label,
                describe(c)
            )));
        }
        let task = match (opts.task, labels.first()) {
            (Some(t), _) => t,
            (None, Some(Cell::Number(_))) => Task::Regression,
            (None, Some(_)) => Task::Classification,
            (None, None) => return Err(FitError::TooFewRows(format!("label {:?} is NULL in every row", opts.label))),
        };
        let classes = if task == Task::Classification {
            let mut names: Vec<String> = labels.iter().filter_map(|c| c.class_name()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
            if names.iter().all(|n| n.parse::<i64>().is_ok()) {
                names.sort_by_key(|n| n.parse::<i64>().unwrap_or(0));
            }
            // Every row its own class (a timestamp, a uuid, free text): nothing to learn.
            if opts.task.is_none() && labels.len() >= UNIQUE_LABEL_ROWS && names.len() == labels.len() {
                return Err(FitError::Invalid(format!(
                    "label {:?} has a different value in each of the {} rows: not a class column (a timestamp, an id, free text?); \
                     give --task regression for a number, or another --label",
                    opts.label,
                    labels.len()
                )));
            }
            if names.len() < 2 {
                return Err(FitError::TooFewRows(format!(
                    "label {:?} has {} class(es) in the training rows; classification needs two or more",
                    opts.label,
                    names.len()
                )));
            }
            names
        } else {
            vec![]
        };
        Ok(FeatureSpec { columns, label: opts.label.clone(), task, classes, scaling: opts.scaling, nulls: opts.nulls, impute_missing: false })
    }

    /// Features per example.
    pub fn width(&self) -> usize {
        self.columns.iter().map(|c| c.width).sum()
    }

    /// Outputs of the model: classes, or one value.
    pub fn outputs(&self) -> usize {
        match self.task {
            Task::Classification => self.classes.len(),
            Task::Regression => 1,
        }
    }

    /// The target of a record.
    pub fn target(&self, r: &Record) -> Result<Target, EncodeError> {
        let cell = r.get(&self.label).ok_or_else(|| EncodeError::Missing(self.label.clone()))?;
        if is_missing(cell) {
            return Err(EncodeError::Null(self.label.clone()));
        }
        match self.task {
            Task::Classification => {
                let name =
                    cell.class_name().ok_or_else(|| EncodeError::Kind { column: self.label.clone(), expected: "a class".into(), got: describe(cell) })?;
                self.classes.iter().position(|c| *c == name).map(Target::Class).ok_or(EncodeError::UnknownClass(name))
            }
            Task::Regression => number_of(cell).map(|x| Target::Value(x as f32)).ok_or_else(|| EncodeError::Kind {
                column: self.label.clone(),
                expected: "a number".into(),
                got: describe(cell),
            }),
        }
    }

    /// Appends the features of a record to `out` (nothing is appended on error).
    pub fn encode(&self, r: &Record, out: &mut Vec<f32>) -> Result<(), EncodeError> {
        let start = out.len();
        let res = self.encode_inner(r, out);
        if res.is_err() {
            out.truncate(start);
        }
        res
    }

    fn encode_inner(&self, r: &Record, out: &mut Vec<f32>) -> Result<(), EncodeError> {
        for col in &self.columns {
            let cell = match r.get(&col.name) {
                Some(c) if !is_unavailable(c) => c,
                None if self.impute_missing => {
                    out.extend_from_slice(&col.impute);
                    continue;
                }
                Some(_) => return Err(EncodeError::Unavailable(col.name.clone())),
                None => return Err(EncodeError::Missing(col.name.clone())),
            };
            if is_missing(cell) {
                match (self.nulls, col.impute_null) {
                    (Nulls::Skip, false) => return Err(EncodeError::Null(col.name.clone())),
                    _ => {
                        out.extend_from_slice(&col.impute);
                        continue;
                    }
                }
            }
            let bad = |expected: &str| EncodeError::Kind { column: col.name.clone(), expected: expected.into(), got: describe(cell) };
            match col.kind {
                Kind::Number => out.push(((number_of(cell).ok_or_else(|| bad("a number"))? - col.shift) / col.scale) as f32),
                Kind::Boolean => out.push(match cell {
                    Cell::Bool(b) => *b as u8 as f32,
                    other => other.as_f64().ok_or_else(|| bad("a boolean"))? as f32,
                }),
                Kind::Category => {
                    let name = cell.class_name().ok_or_else(|| bad("text"))?;
                    let slot = col.vocab.binary_search(&name).unwrap_or(col.vocab.len());
                    out.extend((0..col.width).map(|i| (i == slot) as u8 as f32));
                }
                Kind::Bytes => {
                    let b = bytes_of(cell).ok_or_else(|| bad(&format!("{} bytes", col.width)))?;
                    if b.len() != col.width {
                        return Err(bad(&format!("{} bytes", col.width)));
                    }
                    out.extend(b.iter().map(|x| *x as f32 / 255.0));
                }
                Kind::Array => match cell {
                    Cell::Array(a) if a.len() == col.width => {
                        for (i, x) in a.iter().enumerate() {
                            match (x, self.nulls) {
                                (Some(x), _) if x.is_finite() => out.push(*x as f32),
                                (_, Nulls::Impute) => out.push(col.impute[i]),
                                (_, Nulls::Skip) => return Err(EncodeError::Null(format!("{}[{}]", col.name, i + 1))),
                            }
                        }
                    }
                    _ => return Err(bad(&format!("an array of {}", col.width))),
                },
            }
        }
        Ok(())
    }
}

impl FeatureSpec {
    /// What encoding a record took on trust, one line each: a category never seen in training
    /// (it takes the unseen slot) or a number that came as text. `predict --row` and the
    /// predictions say them; the encoding itself accepts both.
    pub fn notes(&self, r: &Record) -> Vec<String> {
        let mut notes = Vec::new();
        for col in &self.columns {
            match (col.kind, r.get(&col.name)) {
                (Kind::Category, Some(c)) if !is_missing(c) => {
                    if let Some(name) = c.class_name().filter(|n| col.vocab.binary_search(n).is_err()) {
                        notes.push(format!("column {:?}: {name:?} was never seen in training (known: {})", col.name, col.vocab.join(", ")));
                    }
                }
                (Kind::Number, Some(Cell::Text(t))) => notes.push(format!("column {:?}: the number came as text {t:?}", col.name)),
                _ => {}
            }
        }
        notes
    }
}

fn fit_column(name: &str, kind: Kind, width: usize, cells: &[&Cell], scaling: Scaling) -> Result<Column, FitError> {
    let mut col = Column { name: name.into(), kind, width, shift: 0.0, scale: 1.0, vocab: vec![], impute: vec![], impute_null: false };
    match kind {
        Kind::Number => {
            let xs: Vec<f64> = cells.iter().filter_map(|c| number_of(c)).filter(|x| x.is_finite()).collect();
            let n = xs.len().max(1) as f64;
            let mean = xs.iter().sum::<f64>() / n;
            let std = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
            let (min, max) = xs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(*x), b.max(*x)));
            (col.shift, col.scale) = match scaling {
                Scaling::Standard => (mean, if std > 0.0 { std } else { 1.0 }),
                Scaling::MinMax => (min, if max > min { max - min } else { 1.0 }),
                Scaling::None => (0.0, 1.0),
            };
            col.impute = vec![((mean - col.shift) / col.scale) as f32];
        }
        Kind::Boolean => {
            let ones = cells.iter().filter(|c| c.as_f64() == Some(1.0)).count();
            col.impute = vec![(ones * 2 > cells.len()) as u8 as f32];
        }
        Kind::Category => {
            let names: Vec<String> = cells.iter().filter_map(|c| c.class_name()).collect();
            col.vocab = names.iter().cloned().collect::<std::collections::BTreeSet<_>>().into_iter().collect();
            col.width = col.vocab.len() + 1;
            let top = most_frequent(names.iter().map(String::as_str));
            let slot = top.and_then(|t| col.vocab.binary_search(&t).ok());
            col.impute = (0..col.width).map(|i| (Some(i) == slot) as u8 as f32).collect();
        }
        Kind::Bytes | Kind::Array => {
            let mut sum = vec![0f64; width];
            let mut n = vec![0usize; width];
            for c in cells {
                let vals: Vec<Option<f64>> = match (kind, c) {
                    (Kind::Bytes, c) => match bytes_of(c) {
                        Some(b) if b.len() == width => b.iter().map(|x| Some(*x as f64 / 255.0)).collect(),
                        _ => return Err(FitError::Invalid(format!("column {name:?}: values of different lengths ({width} bytes, then {})", describe(c)))),
                    },
                    (_, Cell::Array(a)) if a.len() == width => a.clone(),
                    _ => {
                        return Err(FitError::Invalid(format!(
                            "column {name:?}: arrays of different lengths ({width}, then {}); use fixed-length arrays",
                            describe(c)
                        )))
                    }
                };
                for (i, v) in vals.iter().enumerate() {
                    if let Some(v) = v {
                        sum[i] += v;
                        n[i] += 1;
                    }
                }
            }
            col.impute = sum.iter().zip(&n).map(|(s, n)| (s / (*n).max(1) as f64) as f32).collect();
        }
    }
    Ok(col)
}

#[cfg(test)]
mod tests;
