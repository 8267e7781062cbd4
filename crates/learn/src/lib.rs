//! Continuous learning (issue 13), the parts that decide what a model learns from and when a
//! new version may serve:
//!
//! - [`buffer`]: the training buffer keyed by primary key. A labelled row (label not NULL)
//!   enters it, an update replaces its example, a delete (or a label set back to NULL)
//!   retracts it. Rows are split once and for ever into training and held-out by a stable
//!   hash of their key, so a row never moves between the two as it changes.
//! - [`gate`]: a candidate version serves only when its held-out score is not worse than
//!   the serving version's by more than a margin.
//! - [`versions`]: versions published atomically (written aside, then renamed into place),
//!   each with the source position it covers, the examples it has seen and its held-out
//!   score, and a history file of every version.
//! - [`txns`]: streamed changes gathered into whole transactions, and a transaction already
//!   counted (a slot resends what it had not confirmed) dropped whole: exactly once across
//!   restarts.
//!
//! - [`run`]: the loop that drives them (`tensorcdc run`, and `tensorcdc.run(...)` in
//!   Python): capture, whole transactions into the buffer, the training thread, versions,
//!   predictions, the exactly-once position rule, `/metrics` and the live page.

pub mod buffer;
pub mod gate;
pub mod run;
pub mod txns;
pub mod versions;

pub use buffer::{Applied, TrainingBuffer};
pub use gate::{Gate, Score};
pub use txns::Txns;
pub use versions::{failpoint, VersionError, VersionMeta, Versions};
