//! What the pytest suite and the notebook example start: a private PostgreSQL cluster
//! (`crates/localpg`) and a noida-db broker, plus SQL and MNIST loading. Exposed as
//! `tensorcdc.testing`.

use std::path::PathBuf;
use std::sync::Mutex;

use pyo3::prelude::*;
use tensorcdc_dataset::mnist::{self, Split};

use crate::{err, runtime};

/// A private PostgreSQL cluster (wal_level=logical) on a free port, removed on `stop()`.
#[pyclass(module = "tensorcdc._tensorcdc")]
pub struct LocalPostgres {
    pg: Mutex<Option<tensorcdc_localpg::LocalPg>>,
    #[pyo3(get)]
    url: String,
}

#[pymethods]
impl LocalPostgres {
    #[new]
    fn new(py: Python<'_>) -> PyResult<Self> {
        let pg = py.detach(|| tensorcdc_localpg::LocalPg::start(tensorcdc_localpg::Options { no_fsync: true, ..Default::default() })).map_err(err)?;
        let url = pg.url("postgres");
        Ok(LocalPostgres { pg: Mutex::new(Some(pg)), url })
    }

    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        let pg = self.pg.lock().map_err(|_| err("poisoned"))?.take();
        if let Some(mut pg) = pg {
            py.detach(|| pg.stop()).map_err(err)?;
        }
        Ok(())
    }
}

/// A noida-db Kafka-protocol broker on a free port (found as `tensorcdc_kafka::testing` finds it).
#[pyclass(module = "tensorcdc._tensorcdc")]
pub struct Broker {
    broker: Mutex<Option<tensorcdc_kafka::testing::Noida>>,
    #[pyo3(get)]
    servers: String,
}

#[pymethods]
impl Broker {
    #[new]
    fn new(py: Python<'_>) -> PyResult<Self> {
        let b = py.detach(tensorcdc_kafka::testing::Noida::start).map_err(err)?;
        let servers = b.bootstrap();
        Ok(Broker { broker: Mutex::new(Some(b)), servers })
    }

    fn stop(&self) -> PyResult<()> {
        drop(self.broker.lock().map_err(|_| err("poisoned"))?.take());
        Ok(())
    }
}

/// Runs SQL statements on `url` (libpq's URL and settings, TLS as configured). A statement the
/// server refuses fails with its message and SQLSTATE (`ERROR 42P07: relation "t" already exists`).
#[pyfunction]
pub fn execute(py: Python<'_>, url: String, sql: String) -> PyResult<()> {
    py.detach(|| {
        runtime().block_on(async {
            let c = tensorcdc_postgres::conn::connect(&url).await.map_err(err)?;
            c.batch_execute(&sql).await.map_err(|e| match e.as_db_error() {
                Some(db) => err(format!("{} {}: {}", db.severity(), db.code().code(), db.message())),
                None => err(e),
            })
        })
    })
}

/// Runs one SQL query on `url`; returns its rows, each value as text (None for NULL).
#[pyfunction]
pub fn query(py: Python<'_>, url: String, sql: String) -> PyResult<Vec<Vec<Option<String>>>> {
    py.detach(|| {
        runtime().block_on(async {
            let c = tensorcdc_postgres::conn::connect(&url).await.map_err(err)?;
            let msgs = c.simple_query(&sql).await.map_err(err)?;
            Ok(msgs
                .iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => Some((0..r.len()).map(|i| r.get(i).map(String::from)).collect()),
                    _ => None,
                })
                .collect())
        })
    })
}

/// Loads `limit` rows of an MNIST split ("train" or "test") from IDX files into `table`
/// (created as the blog's mnist2sql does), in transactions of `chunk` rows. Returns the rows
/// loaded.
#[pyfunction]
#[pyo3(signature = (url, table, data, split="train", limit=None, offset=0, chunk=500))]
#[allow(clippy::too_many_arguments)] // Python's keyword arguments
pub fn load_mnist(py: Python<'_>, url: String, table: String, data: PathBuf, split: &str, limit: Option<usize>, offset: usize, chunk: usize) -> PyResult<u64> {
    let split = match split {
        "train" => Split::Train,
        "test" => Split::Test,
        s => return Err(pyo3::exceptions::PyValueError::new_err(format!("split {s:?}: expected train or test"))),
    };
    py.detach(|| {
        let ex = mnist::load(&data, split).map_err(err)?;
        let n = ex.len();
        let (from, to) = (offset.min(n), limit.map(|l| (offset + l).min(n)).unwrap_or(n));
        let part = tensorcdc_dataset::Examples::new(ex.pixels[from * 784..to * 784].to_vec(), ex.labels[from..to].to_vec()).map_err(err)?;
        runtime().block_on(async {
            let c = tensorcdc_postgres::conn::connect(&url).await.map_err(err)?;
            tensorcdc_postgres::load::load_examples(&c, &table, &part, chunk).await.map_err(err)
        })
    })
}
