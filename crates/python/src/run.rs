//! `tensorcdc.run(...)`: the run loop of `tensorcdc run` ([`tensorcdc_learn::run`]) in this
//! process. The Python side turns keyword arguments into the command's flags
//! (`retrain_every=50` is `--retrain-every=50`), so both take the same options with the same
//! defaults and errors. The GIL is released while it runs; SIGINT or SIGTERM ends it as they
//! end the command (the version in training published, the slot confirmed).

use clap::Parser;
use pyo3::prelude::*;

use crate::err;

#[derive(Parser)]
#[command(name = "tensorcdc.run", no_binary_name = true)]
struct Flags {
    #[command(flatten)]
    run: tensorcdc_learn::run::RunArgs,
}

/// Runs until the stream ends (`--stream-timeout`) or a signal; a bad option or a failure is a
/// `TensorcdcError` with the command's message.
#[pyfunction]
pub fn run(py: Python<'_>, flags: Vec<String>) -> PyResult<()> {
    let f = Flags::try_parse_from(&flags).map_err(|e| err(e.render().to_string().trim_end()))?;
    py.detach(|| tensorcdc_learn::run::run(f.run).map_err(|e| err(format!("{e:#}"))))
}
