//! When a candidate version may replace the serving one: its held-out score is compared with
//! the serving version's on the same held-out rows, with a margin.

use serde::{Deserialize, Serialize};

/// A version's score on the held-out rows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Score {
    pub loss: f64,
    /// Classification only.
    pub accuracy: Option<f64>,
    /// Held-out rows scored.
    pub rows: usize,
}

/// The rule: by accuracy for a classifier (higher is better), by loss otherwise (lower is
/// better); a candidate passes when it is not worse than the serving score by more than
/// `margin` (accuracy points as a fraction, or relative loss).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Gate {
    pub margin: f64,
}

impl Default for Gate {
    fn default() -> Self {
        Gate { margin: 0.0 }
    }
}

impl Gate {
    /// True when `candidate` may serve instead of `serving` (always, when nothing serves or
    /// nothing was held out to compare on).
    pub fn admits(&self, candidate: &Score, serving: Option<&Score>) -> bool {
        let Some(s) = serving else { return true };
        if candidate.rows == 0 || s.rows == 0 {
            return true;
        }
        match (candidate.accuracy, s.accuracy) {
            (Some(c), Some(s)) => c >= s - self.margin,
            _ => candidate.loss <= s.loss * (1.0 + self.margin) + f64::EPSILON,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acc(a: f64) -> Score {
        Score { loss: 1.0 - a, accuracy: Some(a), rows: 100 }
    }

    #[test]
    fn a_worse_version_is_refused_and_an_equal_or_better_one_admitted() {
        let g = Gate { margin: 0.01 };
        assert!(!g.admits(&acc(0.80), Some(&acc(0.85))));
        assert!(g.admits(&acc(0.845), Some(&acc(0.85))), "within the margin");
        assert!(g.admits(&acc(0.90), Some(&acc(0.85))));
        assert!(g.admits(&acc(0.10), None), "the first version always serves");
        let loss = |l: f64| Score { loss: l, accuracy: None, rows: 10 };
        assert!(!Gate::default().admits(&loss(2.0), Some(&loss(1.0))));
        assert!(Gate::default().admits(&loss(1.0), Some(&loss(1.0))));
        assert!(Gate { margin: 0.5 }.admits(&loss(1.4), Some(&loss(1.0))));
    }
}
