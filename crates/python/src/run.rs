//! `tensorcdc.run(...)`: the run loop of `tensorcdc run` ([`tensorcdc_learn::run`]) in this
//! process. The Python side turns keyword arguments into the command's flags
//! (`retrain_every=50` is `--retrain-every=50`), so both take the same options with the same
//! defaults and errors. The loop runs on a thread of its own while this one waits with the GIL
//! released, waking every 100 ms to let Python handle its signals: Ctrl-C (KeyboardInterrupt)
//! ends the run as it ends the command (the version in training published, the slot
//! confirmed), then is raised. Python's own signal handlers are left as they are.

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
    let (stop, rx) = tokio::sync::watch::channel(false);
    let looped = std::thread::Builder::new().name("tensorcdc.run".into()).spawn(move || tensorcdc_learn::run::run_until(f.run, Some(rx))).map_err(err)?;
    let mut interrupted = None;
    while !looped.is_finished() {
        py.detach(|| std::thread::sleep(std::time::Duration::from_millis(100)));
        if interrupted.is_none() {
            if let Err(e) = py.check_signals() {
                let _ = stop.send(true);
                interrupted = Some(e);
            }
        }
    }
    let done = looped.join().map_err(|_| err("the run loop panicked"))?;
    if let Some(e) = interrupted {
        return Err(e);
    }
    done.map_err(|e| err(format!("{e:#}")))
}
