//! Checkpoints the CLI wrote, for prediction from raw rows: a general (Sequential) checkpoint
//! with its feature spec (the blog's MNIST network's is the MNIST preset).

use std::path::PathBuf;
use std::sync::Mutex;

use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyReadonlyArray2};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use tensorcdc_dataset::features::{Cell, FeatureSpec, Kind, Record, Task};
use tensorcdc_model::sequential::{checkpoint as seq_checkpoint, SeqPredictor};
use tensorcdc_model::{argmax, device_from_env};

use crate::err;

/// A loaded checkpoint: `predict(rows)` takes dicts of column values (a row as the table
/// has it), `predict_array(x)` an already encoded float32 array.
#[pyclass(module = "tensorcdc._tensorcdc")]
pub struct Model {
    net: Mutex<SeqPredictor>,
    spec: FeatureSpec,
    #[pyo3(get)]
    path: PathBuf,
}

#[pymethods]
impl Model {
    #[new]
    fn new(path: PathBuf) -> PyResult<Self> {
        let device = device_from_env().map_err(err)?;
        // Any checkpoint `train` or `run` wrote (the blog's images included: the MNIST preset
        // is its feature spec), or a Keras file.
        let (meta, p) = seq_checkpoint::load(&path, &device).map_err(err)?;
        Ok(Model { net: Mutex::new(p), spec: meta.features, path })
    }

    /// The class names in output order (empty for a regression).
    #[getter]
    fn classes(&self) -> Vec<String> {
        self.spec.classes.clone()
    }

    /// "classification" or "regression".
    #[getter]
    fn task(&self) -> &'static str {
        match self.spec.task {
            Task::Classification => "classification",
            Task::Regression => "regression",
        }
    }

    /// The feature spec (JSON): columns, vocabularies, scaling statistics, label, classes.
    #[getter]
    fn spec(&self) -> PyResult<String> {
        serde_json::to_string(&self.spec).map_err(err)
    }

    /// Encodes rows (dicts of column values) with the checkpoint's feature spec: float32 [N, F].
    fn encode<'py>(&self, py: Python<'py>, rows: Vec<Bound<'py, PyDict>>) -> PyResult<Bound<'py, PyAny>> {
        let mut x = Vec::with_capacity(rows.len() * self.spec.width());
        for (i, r) in rows.iter().enumerate() {
            let mut rec = crate::convert::record(r, None)?;
            bytes_from_lists(&self.spec, &mut rec).map_err(|e| err(format!("row {i}: {e}")))?;
            self.spec.encode(&rec, &mut x).map_err(|e| err(format!("row {i}: {e}")))?;
        }
        Ok(Array2::from_shape_vec((rows.len(), self.spec.width()), x).map_err(err)?.into_pyarray(py).into_any())
    }

    /// The model's outputs for encoded features: class probabilities or values, float32 [N, K].
    fn predict_array<'py>(&self, py: Python<'py>, x: PyReadonlyArray2<'py, f32>) -> PyResult<Bound<'py, PyAny>> {
        let a = x.as_array();
        let (n, w) = (a.nrows(), a.ncols());
        let data: Vec<f32> = a.iter().copied().collect();
        let outs = py.detach(|| self.outputs(&data, w))?;
        let k = outs.first().map(Vec::len).unwrap_or(0);
        Ok(Array2::from_shape_vec((n, k), outs.concat()).map_err(err)?.into_pyarray(py).into_any())
    }

    /// Predictions for rows (dicts of column values, the label not needed): a dict per row
    /// with `prediction` (the class name, or the value), `probability` (classification) and
    /// `probabilities` by class name. A bytes column (the blog's `pixels`) takes `bytes`, a
    /// list of ints 0-255 or a numpy array of them.
    fn predict<'py>(&self, py: Python<'py>, rows: Vec<Bound<'py, PyDict>>) -> PyResult<Bound<'py, PyList>> {
        if rows.is_empty() {
            return Ok(PyList::empty(py));
        }
        let x = self.encode(py, rows)?;
        let x: PyReadonlyArray2<f32> = x.extract()?;
        let a = x.as_array();
        let (w, data) = (a.ncols(), a.iter().copied().collect::<Vec<f32>>());
        let outs = py.detach(|| self.outputs(&data, w))?;
        let out = PyList::empty(py);
        for o in outs {
            let d = PyDict::new(py);
            match self.spec.task {
                Task::Classification => {
                    let (i, p) = argmax(&o);
                    d.set_item("prediction", &self.spec.classes[i])?;
                    d.set_item("probability", p)?;
                    let probs = PyDict::new(py);
                    for (c, p) in self.spec.classes.iter().zip(&o) {
                        probs.set_item(c, p)?;
                    }
                    d.set_item("probabilities", probs)?;
                }
                Task::Regression => d.set_item("prediction", o[0])?,
            }
            out.append(d)?;
        }
        Ok(out)
    }

    fn __repr__(&self) -> String {
        format!(
            "Model({:?}, {} inputs, {} {})",
            self.path.display().to_string(),
            self.spec.width(),
            self.task(),
            if self.spec.classes.is_empty() { String::new() } else { format!("{:?}", self.spec.classes) }
        )
    }
}

impl Model {
    fn outputs(&self, x: &[f32], width: usize) -> PyResult<Vec<Vec<f32>>> {
        let net = self.net.lock().map_err(|_| err("model poisoned by an earlier panic"))?;
        net.predict(x, width).map_err(err)
    }
}

/// A bytes column (the blog's `pixels`) given as a list of ints 0-255 (or a numpy array,
/// made a list by `convert`): the bytes it stands for, as a row read from the table has them.
/// Anything else in the list is an error naming the column and the index.
fn bytes_from_lists(spec: &FeatureSpec, rec: &mut Record) -> Result<(), String> {
    for col in spec.columns.iter().filter(|c| c.kind == Kind::Bytes) {
        for (name, cell) in rec.cells.iter_mut().filter(|(n, _)| *n == col.name) {
            let Cell::Array(a) = cell else { continue };
            let want = format!("{w} bytes or a list of {w} ints 0-255", w = col.width);
            if a.len() != col.width {
                return Err(format!("column {name:?}: expected {want}, got a list of {}", a.len()));
            }
            let mut b = Vec::with_capacity(a.len());
            for (i, x) in a.iter().enumerate() {
                match x {
                    Some(v) if v.fract() == 0.0 && (0.0..=255.0).contains(v) => b.push(*v as u8),
                    Some(v) => return Err(format!("column {name:?}: expected {want}, got {v} at index {i}")),
                    None => return Err(format!("column {name:?}: expected {want}, got None at index {i}")),
                }
            }
            *cell = Cell::Bytes(b);
        }
    }
    Ok(())
}
