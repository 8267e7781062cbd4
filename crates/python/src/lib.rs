//! The native half of the `tensorcdc` Python package (`python/tensorcdc`): bounded reads and
//! streams as numpy arrays, checkpoints, change events, and test helpers. The Python half
//! builds the datasets (batches, `to_tf()`, `to_torch()`) on top.
//!
//! Every call that waits on Kafka or Postgres releases the GIL (`Python::detach`), so a
//! notebook, TensorFlow's input threads and PyTorch's DataLoader keep running meanwhile.

use std::sync::OnceLock;

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use tensorcdc_source::{OnError, SourceConfig};

mod convert;
mod datasets;
mod model;
mod run;
mod testing;

create_exception!(_tensorcdc, TensorcdcError, PyException, "A read, decode or model error; the message names the topic/partition@offset, row or file.");

/// Any library error as a Python `TensorcdcError` with its message.
pub(crate) fn err(e: impl std::fmt::Display) -> PyErr {
    TensorcdcError::new_err(e.to_string())
}

/// One runtime for every reader of the process (two workers: the machine has two cores).
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime"))
}

fn get<'py, T: FromPyObjectOwned<'py>>(d: &Bound<'py, PyDict>, key: &str) -> PyResult<Option<T>> {
    match d.get_item(key)? {
        Some(v) if !v.is_none() => v.extract::<T>().map(Some).map_err(|e| pyo3::exceptions::PyTypeError::new_err(format!("{key}: {}", Into::<PyErr>::into(e)))),
        _ => Ok(None),
    }
}

/// A source from the Python side's keyword arguments (TF-IO's names where they overlap).
pub(crate) fn source_config(d: &Bound<'_, PyDict>) -> PyResult<SourceConfig> {
    let mut c = SourceConfig { data: get(d, "data")?, kafka: get(d, "servers")?, ..Default::default() };
    c.topics = get(d, "topics")?.unwrap_or_default();
    c.partition = get(d, "partition")?;
    c.offset = get(d, "offset")?.unwrap_or(0);
    c.strict = get(d, "strict")?.unwrap_or(false);
    c.group = get(d, "group_id")?;
    c.stream_timeout_ms = get(d, "stream_timeout")?;
    let conf: Vec<String> = get(d, "configuration")?.unwrap_or_default();
    // TF-IO passes auto.offset.reset among the consumer settings; so do we (they win).
    c.kafka_settings = tensorcdc_kafka::settings(&conf).map_err(err)?;
    c.source = get(d, "url")?;
    c.table = get(d, "table")?;
    if let Some(f) = get::<String>(d, "format")? {
        c.decode.format = f.parse().map_err(crate::value_error)?;
    }
    c.columns = get(d, "columns")?;
    if let Some(o) = get::<String>(d, "on_error")? {
        c.on_error = o.parse::<OnError>().map_err(crate::value_error)?;
    }
    c.limit = get(d, "limit")?;
    if let Some(f) = get(d, "label_field")? {
        c.decode.label_field = f;
    }
    if let Some(f) = get(d, "features_field")? {
        c.decode.features_field = f;
    }
    Ok(c)
}

#[pymodule]
fn _tensorcdc(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("TensorcdcError", m.py().get_type::<TensorcdcError>())?;
    m.add_function(wrap_pyfunction!(datasets::read_examples, m)?)?;
    m.add_function(wrap_pyfunction!(datasets::read_rows, m)?)?;
    m.add_class::<datasets::Stream>()?;
    m.add_class::<datasets::KafkaTable>()?;
    m.add_class::<model::Model>()?;
    m.add_class::<testing::LocalPostgres>()?;
    m.add_class::<testing::Broker>()?;
    m.add_function(wrap_pyfunction!(testing::execute, m)?)?;
    m.add_function(wrap_pyfunction!(testing::load_mnist, m)?)?;
    m.add_function(wrap_pyfunction!(testing::query, m)?)?;
    m.add_function(wrap_pyfunction!(run::run, m)?)?;
    Ok(())
}

/// A setting's bad value as Python's `ValueError` (the Rust error's words).
pub(crate) fn value_error(e: impl std::fmt::Display) -> pyo3::PyErr {
    pyo3::exceptions::PyValueError::new_err(e.to_string())
}
