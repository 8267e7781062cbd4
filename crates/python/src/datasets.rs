//! Reads as numpy arrays: MNIST examples (the blog's preset: 784 bytes and a digit) or the
//! rows of any table encoded by a feature spec (fitted here, or a checkpoint's).

use std::sync::Mutex;

use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use tensorcdc_dataset::features::{Change, Encoded, FeatureSpec, SpecOptions, Task};
use tensorcdc_dataset::mnist::Split;
use tensorcdc_dataset::{KeyedExamples, PIXELS};
use tensorcdc_source::{Rows, TopicTable};

use crate::{err, runtime, source_config};

fn pixels<'py>(py: Python<'py>, px: Vec<u8>) -> PyResult<Bound<'py, PyAny>> {
    let n = px.len() / PIXELS;
    Ok(Array2::from_shape_vec((n, PIXELS), px).map_err(err)?.into_pyarray(py).into_any())
}

fn features<'py>(py: Python<'py>, x: Vec<f32>, width: usize) -> PyResult<Bound<'py, PyAny>> {
    let n = x.len().checked_div(width).unwrap_or(0);
    Ok(Array2::from_shape_vec((n, width), x).map_err(err)?.into_pyarray(py).into_any())
}

/// The targets of `e` for its task: class indices (int64) or values (float32).
/// Pixels, labels, and two counts.
type Examples<'py> = (Bound<'py, PyAny>, Bound<'py, PyArray1<i64>>, u64, u64);

/// Features, targets, and the rows skipped (key, reason).
type Arrays<'py> = (Bound<'py, PyAny>, Bound<'py, PyAny>, Vec<(Option<String>, String)>);

fn targets<'py>(py: Python<'py>, spec: &FeatureSpec, e: Encoded) -> Arrays<'py> {
    let skipped = e.skipped.into_iter().map(|(k, r)| (k, r.to_string())).collect();
    let x = features(py, e.x, e.width).expect("shape from width");
    let y = match spec.task {
        Task::Classification => e.classes.into_pyarray(py).into_any(),
        Task::Regression => e.values.into_pyarray(py).into_any(),
    };
    (x, y, skipped)
}

/// A bounded read of MNIST examples: `(pixels uint8 [N, 784], labels int64 [N], records, skipped)`.
#[pyfunction]
pub fn read_examples<'py>(py: Python<'py>, cfg: &Bound<'py, PyDict>) -> PyResult<Examples<'py>> {
    let c = source_config(cfg)?;
    let (ex, report) = py.detach(|| runtime().block_on(tensorcdc_source::bounded_examples(&c, Split::Train))).map_err(err)?;
    let labels: Vec<i64> = ex.labels.iter().map(|&l| l as i64).collect();
    Ok((pixels(py, ex.pixels)?, labels.into_pyarray(py), report.records, report.skipped))
}

/// The feature spec's options from keyword arguments.
fn spec_options(o: &Bound<'_, PyDict>, key_columns: Vec<String>) -> PyResult<SpecOptions> {
    let s = |k: &str| -> PyResult<Option<String>> { crate::get(o, k) };
    let parse = |k: &str, default: &str| -> PyResult<String> { Ok(s(k)?.unwrap_or_else(|| default.into())) };
    Ok(SpecOptions {
        label: s("label")?.ok_or_else(|| pyo3::exceptions::PyValueError::new_err("label= is needed to learn from a table"))?,
        features: crate::get(o, "features")?,
        exclude: key_columns,
        scaling: parse("scaling", "standard")?.parse().map_err(crate::value_error)?,
        nulls: parse("nulls", "skip")?.parse().map_err(crate::value_error)?,
        task: s("task")?.map(|t| t.parse()).transpose().map_err(crate::value_error)?,
    })
}

/// A bounded read of any table's rows, encoded by `spec` (JSON) or by a spec fitted on these
/// rows with `options` (label, features, scaling, nulls, task). Returns a dict: `x` float32
/// [N, F], `y` (int64 classes or float32 values), `spec` (JSON), `classes`, `skipped`
/// [(key, reason)], `records`, `bad`.
#[pyfunction]
#[pyo3(signature = (cfg, spec=None, options=None))]
pub fn read_rows<'py>(py: Python<'py>, cfg: &Bound<'py, PyDict>, spec: Option<String>, options: Option<&Bound<'py, PyDict>>) -> PyResult<Bound<'py, PyDict>> {
    let c = source_config(cfg)?;
    let rows = py.detach(|| runtime().block_on(tensorcdc_source::bounded_rows(&c))).map_err(err)?;
    let spec = match (spec, options) {
        (Some(json), _) => serde_json::from_str::<FeatureSpec>(&json).map_err(|e| err(format!("spec: {e}")))?,
        (None, Some(o)) => FeatureSpec::fit(rows.set.iter(), &spec_options(o, rows.key_columns.iter().cloned().collect())?).map_err(err)?,
        (None, None) => return Err(pyo3::exceptions::PyValueError::new_err("give label= (to fit a feature spec) or spec=")),
    };
    let e = spec.encode_all(rows.set.iter());
    let out = rows_dict(py, &spec, e)?;
    out.set_item("records", rows.report.records)?;
    out.set_item("bad", rows.report.skipped)?;
    Ok(out)
}

/// `x`, `y`, the spec (JSON), its classes and the rows skipped, as a dict.
fn rows_dict<'py>(py: Python<'py>, spec: &FeatureSpec, e: Encoded) -> PyResult<Bound<'py, PyDict>> {
    let (x, y, skipped) = targets(py, spec, e);
    let out = PyDict::new(py);
    out.set_item("x", x)?;
    out.set_item("y", y)?;
    out.set_item("spec", serde_json::to_string(spec).map_err(err)?)?;
    out.set_item("classes", spec.classes.clone())?;
    out.set_item("skipped", skipped)?;
    Ok(out)
}

enum TableKind {
    Mnist(TopicTable<KeyedExamples>),
    Rows { table: TopicTable<Rows>, spec: Option<Box<FeatureSpec>>, options: Option<SpecOptions> },
}

/// A topic read as a table, again each epoch but incrementally: the keyed set is kept and each
/// `refresh()` reads only the records added since (one partition; with none given, every
/// partition is read from the start each time).
#[pyclass(module = "tensorcdc._tensorcdc")]
pub struct KafkaTable {
    kind: Mutex<TableKind>,
}

#[pymethods]
impl KafkaTable {
    #[new]
    #[pyo3(signature = (cfg, spec=None, options=None))]
    fn new(cfg: &Bound<'_, PyDict>, spec: Option<String>, options: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let c = source_config(cfg)?;
        let kind = match (spec, options) {
            (None, None) => TableKind::Mnist(TopicTable::new(&c)),
            (Some(json), _) => TableKind::Rows {
                table: TopicTable::new(&c),
                spec: Some(Box::new(serde_json::from_str(&json).map_err(|e| err(format!("spec: {e}")))?)),
                options: None,
            },
            (None, Some(o)) => TableKind::Rows { table: TopicTable::new(&c), spec: None, options: Some(spec_options(o, Vec::new())?) },
        };
        Ok(KafkaTable { kind: Mutex::new(kind) })
    }

    /// Reads what was added since the last refresh and returns the whole table: MNIST
    /// `(pixels uint8, labels int64, records, skipped)`, or for any table a dict as
    /// `read_rows` gives (the spec fitted on the first refresh and kept).
    fn refresh<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let mut kind = self.kind.lock().map_err(|_| err("table poisoned by an earlier panic"))?;
        match &mut *kind {
            TableKind::Mnist(t) => {
                let ex = py.detach(|| runtime().block_on(t.refresh()).map(|s| s.to_examples())).map_err(err)?;
                let labels: Vec<i64> = ex.labels.iter().map(|&l| l as i64).collect();
                Ok((pixels(py, ex.pixels)?, labels.into_pyarray(py), t.report.records, t.report.skipped).into_pyobject(py)?.into_any())
            }
            TableKind::Rows { table, spec, options } => {
                let rows = py.detach(|| runtime().block_on(table.refresh())).map_err(err)?;
                if spec.is_none() {
                    // Kept until a fit succeeds: a table whose rows so far have one class
                    // fails this refresh, and the next one fits again.
                    let o = options.as_mut().expect("options when no spec");
                    o.exclude = rows.key_columns.iter().cloned().collect();
                    *spec = Some(Box::new(FeatureSpec::fit(rows.set.iter(), o).map_err(err)?));
                }
                let spec = spec.as_ref().expect("fitted");
                let e = spec.encode_all(rows.set.iter());
                let out = rows_dict(py, spec, e)?;
                out.set_item("records", table.report.records)?;
                out.set_item("bad", table.report.skipped)?;
                Ok(out.into_any())
            }
        }
    }
}

enum Mode {
    Mnist,
    Rows(Box<FeatureSpec>),
    Changes,
}

/// A stream: a consumer group, or an in-process capture. `next(max)` hands out a batch and
/// marks the previous one used (its offsets may then be committed); `close()` commits.
#[pyclass(module = "tensorcdc._tensorcdc")]
pub struct Stream {
    inner: Mutex<Option<tensorcdc_source::Stream>>,
    mode: Mode,
}

#[pymethods]
impl Stream {
    /// `mode`: "mnist" (pixels and digits), "rows" (encoded by `spec`, JSON) or "changes"
    /// (dicts). `timeout_ms`: the stream ends after this long without a record (-1: never).
    #[new]
    #[pyo3(signature = (cfg, mode, timeout_ms, spec=None))]
    fn new(py: Python<'_>, cfg: &Bound<'_, PyDict>, mode: &str, timeout_ms: i64, spec: Option<String>) -> PyResult<Self> {
        let c = source_config(cfg)?;
        let mode = match (mode, spec) {
            ("mnist", _) => Mode::Mnist,
            ("rows", Some(json)) => Mode::Rows(Box::new(serde_json::from_str(&json).map_err(|e| err(format!("spec: {e}")))?)),
            ("rows", None) => {
                return Err(pyo3::exceptions::PyValueError::new_err("a stream of rows needs a fitted spec: spec= (from a bounded dataset or a checkpoint)"))
            }
            ("changes", _) => Mode::Changes,
            (m, _) => return Err(pyo3::exceptions::PyValueError::new_err(format!("mode {m:?}: expected mnist, rows or changes"))),
        };
        let s = py.detach(|| runtime().block_on(tensorcdc_source::Stream::open(&c, "", timeout_ms))).map_err(err)?;
        Ok(Stream { inner: Mutex::new(Some(s)), mode })
    }

    /// The next batch, or None when the stream ended: mnist `(x uint8, y int64, keys,
    /// positions)`, rows `(x float32, y, keys, positions)`, changes a list of dicts.
    fn next<'py>(&self, py: Python<'py>, max: usize) -> PyResult<Option<Bound<'py, PyAny>>> {
        let mut guard = self.inner.lock().map_err(|_| err("stream poisoned by an earlier panic"))?;
        let Some(s) = guard.as_mut() else { return Ok(None) };
        match &self.mode {
            Mode::Mnist => {
                let Some(items) = py.detach(|| runtime().block_on(s.next_batch(max))).map_err(err)? else { return Ok(None) };
                let mut px = Vec::with_capacity(items.len() * PIXELS);
                let (mut y, mut keys, mut pos) = (Vec::new(), Vec::new(), Vec::new());
                for it in items {
                    px.extend_from_slice(&it.example.pixels[..]);
                    y.push(it.example.label as i64);
                    keys.push(it.example.key);
                    pos.push(it.example.position.map(|p| p.to_string()));
                }
                Ok(Some((pixels(py, px)?, y.into_pyarray(py), keys, pos).into_pyobject(py)?.into_any()))
            }
            Mode::Rows(spec) => loop {
                let Some(items) = py.detach(|| runtime().block_on(s.next_changes(max))).map_err(err)? else { return Ok(None) };
                // Upserts that give an example (a row without a label is no training example);
                // deletes cannot take back a batch already handed out.
                let mut e = Encoded { width: spec.width(), ..Default::default() };
                let (mut keys, mut pos) = (Vec::new(), Vec::new());
                for it in &items {
                    if let Change::Upsert(r) = &it.change {
                        let one = spec.encode_all(std::iter::once(r));
                        if one.skipped.is_empty() {
                            e.x.extend(one.x);
                            e.classes.extend(one.classes);
                            e.values.extend(one.values);
                            keys.push(r.key.clone());
                            pos.push(it.position.as_ref().map(ToString::to_string).unwrap_or_default());
                        }
                    }
                }
                if e.is_empty() {
                    continue;
                }
                let (x, y, _) = targets(py, spec, e);
                return Ok(Some((x, y, keys, pos).into_pyobject(py)?.into_any()));
            },
            Mode::Changes => {
                let Some(items) = py.detach(|| runtime().block_on(s.next_changes(max))).map_err(err)? else { return Ok(None) };
                let out = PyList::empty(py);
                for it in items {
                    let d = PyDict::new(py);
                    match &it.change {
                        Change::Upsert(r) => {
                            d.set_item("op", "upsert")?;
                            d.set_item("key", r.key.clone())?;
                            d.set_item("row", crate::convert::record_dict(py, r)?)?;
                        }
                        Change::Delete(k) => {
                            d.set_item("op", "delete")?;
                            d.set_item("key", k)?;
                            d.set_item("row", py.None())?;
                        }
                        Change::Skip => continue,
                    }
                    d.set_item("position", it.position.as_ref().map(ToString::to_string))?;
                    d.set_item("commit_ts_ms", it.commit_ts_ms)?;
                    out.append(d)?;
                }
                Ok(Some(out.into_any()))
            }
        }
    }

    /// Records read and skipped so far.
    fn report(&self) -> PyResult<(u64, u64)> {
        let guard = self.inner.lock().map_err(|_| err("stream poisoned"))?;
        Ok(guard.as_ref().map(|s| (s.report.records, s.report.skipped)).unwrap_or((0, 0)))
    }

    /// Commits the offsets of the batches handed out / stops the capture (dropping its slot).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let s = self.inner.lock().map_err(|_| err("stream poisoned"))?.take();
        if let Some(s) = s {
            py.detach(|| runtime().block_on(s.close())).map_err(err)?;
        }
        Ok(())
    }
}
