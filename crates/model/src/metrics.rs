//! Running loss and accuracy, averaged over examples as Keras reports them.

/// Sums over the examples seen so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Metrics {
    pub examples: usize,
    pub loss_sum: f64,
    pub correct: usize,
}

impl Metrics {
    /// Adds a batch of `n` examples with mean loss `loss` and `correct` right answers.
    pub fn add(&mut self, n: usize, loss: f64, correct: usize) {
        self.examples += n;
        self.loss_sum += loss * n as f64;
        self.correct += correct;
    }

    /// Mean loss per example (0 when empty).
    pub fn loss(&self) -> f64 {
        if self.examples == 0 {
            0.0
        } else {
            self.loss_sum / self.examples as f64
        }
    }

    /// Fraction of correct predictions (0 when empty).
    pub fn accuracy(&self) -> f64 {
        if self.examples == 0 {
            0.0
        } else {
            self.correct as f64 / self.examples as f64
        }
    }
}
