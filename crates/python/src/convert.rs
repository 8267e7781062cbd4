//! Cells between Python and the feature spec: `None`, `bool`, `int`, `float`, `str`, `bytes`
//! and lists of numbers, both ways (numpy arrays and scalars from Python too).

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString};
use tensorcdc_dataset::features::{Cell, Record};

/// A Python value as a cell; anything else is an error naming the column.
pub fn cell(name: &str, v: &Bound<'_, PyAny>) -> PyResult<Cell> {
    Ok(if v.is_none() {
        Cell::Null
    } else if v.is_instance_of::<PyBool>() {
        Cell::Bool(v.extract()?)
    } else if v.is_instance_of::<PyInt>() {
        Cell::Int(v.extract()?)
    } else if v.is_instance_of::<PyFloat>() {
        Cell::Number(v.extract()?)
    } else if v.is_instance_of::<PyString>() {
        Cell::Text(v.extract()?)
    } else if v.is_instance_of::<PyBytes>() {
        Cell::Bytes(v.extract()?)
    } else if let Ok(xs) = v.extract::<Vec<Option<f64>>>() {
        Cell::Array(xs)
    } else if v.hasattr("tolist")? && v.hasattr("dtype")? {
        // numpy: an array as the list of its values, a scalar (np.int64, np.uint8) as the
        // Python number it holds.
        let plain = v.call_method0("tolist")?;
        if plain.hasattr("dtype")? {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!("column {name:?}: a numpy value that tolist() does not make plain")));
        }
        return cell(name, &plain);
    } else {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "column {name:?}: expected None, bool, int, float, str, bytes or a list of numbers, got {}",
            v.get_type().name()?
        )));
    })
}

/// A dict of column values as a record.
pub fn record(d: &Bound<'_, PyDict>, key: Option<String>) -> PyResult<Record> {
    let mut cells = Vec::with_capacity(d.len());
    for (k, v) in d.iter() {
        let name: String = k.extract()?;
        let c = cell(&name, &v)?;
        cells.push((name, c));
    }
    Ok(Record { key, cells })
}

/// A cell as a Python value.
pub fn to_py<'py>(py: Python<'py>, c: &Cell) -> PyResult<Bound<'py, PyAny>> {
    Ok(match c {
        Cell::Null => py.None().into_bound(py),
        Cell::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Cell::Int(i) => i.into_pyobject(py)?.into_any(),
        Cell::Number(x) => x.into_pyobject(py)?.into_any(),
        Cell::Text(t) => t.into_pyobject(py)?.into_any(),
        Cell::Bytes(b) => PyBytes::new(py, b).into_any(),
        Cell::Array(xs) => PyList::new(py, xs)?.into_any(),
    })
}

/// A record's cells as a dict.
pub fn record_dict<'py>(py: Python<'py>, r: &Record) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, c) in &r.cells {
        d.set_item(k, to_py(py, c)?)?;
    }
    Ok(d)
}
