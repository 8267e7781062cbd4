//! The choices of a feature spec: column kinds, scaling, NULL policy, task (with the
//! names their flags and checkpoints use).

use serde::{Deserialize, Serialize};
use tensorcdc_change::UnknownName;

/// How a column becomes features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Number,
    Boolean,
    Category,
    Bytes,
    Array,
}

/// How number columns are scaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Scaling {
    #[default]
    Standard,
    MinMax,
    None,
}

/// What a NULL feature does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Nulls {
    #[default]
    Skip,
    Impute,
}

/// What the label asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    Classification,
    Regression,
}

impl std::str::FromStr for Scaling {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        match s {
            "standard" => Ok(Scaling::Standard),
            "minmax" => Ok(Scaling::MinMax),
            "none" => Ok(Scaling::None),
            o => Err(UnknownName::new("--scaling", o, "standard, minmax or none")),
        }
    }
}

impl std::str::FromStr for Nulls {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        match s {
            "skip" => Ok(Nulls::Skip),
            "impute" => Ok(Nulls::Impute),
            o => Err(UnknownName::new("--nulls", o, "skip or impute")),
        }
    }
}

impl std::str::FromStr for Task {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        match s {
            "classification" => Ok(Task::Classification),
            "regression" => Ok(Task::Regression),
            o => Err(UnknownName::new("--task", o, "classification or regression")),
        }
    }
}
