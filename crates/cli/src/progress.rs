//! Keras-like progress: `Epoch 1/5` then `938/938 [======] - 1s 1ms/step - loss: 0.4989 - accuracy: 0.8252`.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tensorcdc_model::sequential::{FitEpoch, FitMetrics, FitProgress};

/// The finished line Keras prints at the end of an epoch.
pub fn keras_line(steps: usize, elapsed: Duration, m: &FitMetrics) -> String {
    let per_step = elapsed.as_secs_f64() / steps.max(1) as f64;
    let step_s = if per_step >= 1.0 { format!("{per_step:.0}s/step") } else { format!("{:.0}ms/step", per_step * 1e3) };
    format!("{steps}/{steps} [==============================] - {:.1}s {step_s} - loss: {:.4} - accuracy: {:.4}", elapsed.as_secs_f64(), m.loss(), m.accuracy())
}

/// Draws a bar while an epoch runs (on a terminal) and prints the Keras line at its end.
pub struct EpochBar {
    bar: Option<ProgressBar>,
}

impl EpochBar {
    pub fn new() -> Self {
        EpochBar { bar: None }
    }

    pub fn on_step(&mut self, p: &FitProgress, epochs: usize) {
        if p.step == 1 {
            println!("Epoch {}/{epochs}", p.epoch);
            let bar = ProgressBar::with_draw_target(Some(p.steps as u64), ProgressDrawTarget::stderr());
            bar.set_style(ProgressStyle::with_template("{pos}/{len} [{bar:30.cyan/blue}] - {elapsed} - {msg}").expect("valid template").progress_chars("=>."));
            self.bar = Some(bar);
        }
        if let Some(bar) = &self.bar {
            bar.set_position(p.step as u64);
            if p.step.is_multiple_of(16) || p.step == p.steps {
                bar.set_message(format!("loss: {:.4} - accuracy: {:.4}", p.metrics.loss(), p.metrics.accuracy()));
            }
        }
    }

    pub fn on_epoch(&mut self, e: &FitEpoch, steps: usize) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        println!("{}", keras_line(steps, e.elapsed, &e.metrics));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_format() {
        let m = FitMetrics { n: 64, loss_sum: 0.5 * 64.0, correct: 32, ..Default::default() };
        let l = keras_line(938, Duration::from_millis(1876), &m);
        assert_eq!(l, "938/938 [==============================] - 1.9s 2ms/step - loss: 0.5000 - accuracy: 0.5000");
    }
}
