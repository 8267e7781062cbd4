//! Records to tensors.
//!
//! * [`idx`]: the MNIST IDX file format (read and write, `.gz` or plain).
//! * [`decode`]: Kafka records (CSV, Debezium JSON) and typed change events to examples.
//! * [`features`]: features from any columns: the feature spec (kinds, scaling, vocabularies,
//!   NULLs, label and task), cells from typed rows and Debezium JSON, the keyed row set.
//! * [`mnist`]: the four-file MNIST layout on disk, and the SQL export (`mnist sql`).
//! * [`example`]: [`Example`] (one image and its label) and [`Examples`], the in-memory
//!   set that training and evaluation batch and shuffle.
//!
//! Pixels stay bytes (0..=255) until the model scales them by 1/255, so a set of 60,000
//! images is 47 MB and never copied as floats.

pub mod decode;
pub mod error;
pub mod example;
pub mod features;
pub mod idx;
pub mod mnist;

pub use decode::{decode, from_message, DecodeOptions, Format};
pub use error::DatasetError;
pub use example::{scale_pixels, Example, Examples, KeyedExamples, Position, PIXELS};
