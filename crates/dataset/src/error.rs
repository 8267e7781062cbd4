//! Errors of this crate: each names the file, row or record and what was expected.

use std::path::PathBuf;

/// Everything that can go wrong reading, writing or decoding data.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The operating system refused a read or write.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An IDX file whose content is not what the format or MNIST requires.
    #[error("{path}: not a valid MNIST IDX file: {reason}")]
    BadIdx { path: PathBuf, reason: String },
    /// The image and label files of one split disagree.
    #[error("{images} has {n_images} images but {labels} has {n_labels} labels")]
    CountMismatch { images: PathBuf, n_images: usize, labels: PathBuf, n_labels: usize },
    /// A directory lacks one of the four MNIST files.
    #[error("{path} not found (expected the four MNIST files {expected} in {dir}; pass --download to fetch them, or --data DIR pointing at a directory that holds them)")]
    MissingFile { path: PathBuf, dir: PathBuf, expected: &'static str },
    /// A change record (Debezium JSON or CSV, named by topic/partition@offset) that is not
    /// one a table's rows can be read from.
    #[error("{what}: {reason}")]
    BadRecord { what: String, reason: String },
    /// `--classes` that is not a preset nor ten names.
    #[error("--classes {given:?}: expected digits, fashion, or ten names separated by commas (got {names})")]
    Classes { given: String, names: usize },
    /// An example whose pixels or label are out of range.
    #[error("{what}: {reason}")]
    BadExample { what: String, reason: String },
}

impl DatasetError {
    pub(crate) fn record(what: &dyn std::fmt::Display, reason: impl Into<String>) -> Self {
        DatasetError::BadRecord { what: what.to_string(), reason: reason.into() }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DatasetError::Io { path: path.into(), source }
    }
}
