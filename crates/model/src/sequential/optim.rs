//! Keras' optimizers and compile config: `model.get_compile_config()` (optimizer, loss) read
//! as Keras writes it, and Adam, AdamW, SGD (momentum, Nesterov) and RMSprop (momentum) with
//! Keras 3's defaults and update rules (`keras/src/optimizers/{adam,adamw,sgd,rmsprop}.py`;
//! AdamW's decay is `keras/src/optimizers/base_optimizer.py` `_apply_weight_decay`, before
//! the Adam step). Every optimizer keeps burn's `AdamState` (step count and two moments).

use burn::optim::{AdamState, AdaptiveMomentumState, LearningRate, Optimizer};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::Value as J;

use super::fit::Loss;
use crate::{FusedAdam, ModelError};

/// An optimizer and its settings, Keras' names and defaults.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "class_name")]
pub enum OptimizerSpec {
    Adam {
        learning_rate: f64,
        beta_1: f32,
        beta_2: f32,
        epsilon: f32,
    },
    AdamW {
        learning_rate: f64,
        weight_decay: f32,
        beta_1: f32,
        beta_2: f32,
        epsilon: f32,
    },
    #[serde(rename = "SGD")]
    Sgd {
        learning_rate: f64,
        momentum: f32,
        nesterov: bool,
    },
    RMSprop {
        learning_rate: f64,
        rho: f32,
        momentum: f32,
        epsilon: f32,
    },
}

impl OptimizerSpec {
    /// Keras' Adam with learning rate `lr`.
    pub fn adam(lr: f64) -> Self {
        OptimizerSpec::Adam { learning_rate: lr, beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7 }
    }

    pub fn learning_rate(&self) -> f64 {
        match *self {
            OptimizerSpec::Adam { learning_rate, .. }
            | OptimizerSpec::AdamW { learning_rate, .. }
            | OptimizerSpec::Sgd { learning_rate, .. }
            | OptimizerSpec::RMSprop { learning_rate, .. } => learning_rate,
        }
    }

    /// From a Keras optimizer config (`{"class_name": "Adam", "config": {...}}`) or name.
    pub fn from_keras(v: &J) -> Result<Self, ModelError> {
        let (name, cfg) = match v {
            J::String(s) => (s.as_str(), &J::Null),
            J::Object(o) => (o.get("class_name").and_then(J::as_str).unwrap_or(""), o.get("config").unwrap_or(&J::Null)),
            _ => return Err(ModelError::KerasConfig("optimizer: expected a name or a Keras optimizer config".into())),
        };
        let f = |k: &str, d: f64| cfg.get(k).and_then(J::as_f64).unwrap_or(d);
        if cfg.get("learning_rate").is_some_and(J::is_object) {
            return Err(ModelError::KerasConfig("optimizer: learning-rate schedules are not supported".into()));
        }
        // Settings that change the training and are not implemented: refused, not ignored.
        let set = |k: &str| cfg.get(k).is_some_and(|v| !v.is_null() && v != &J::Bool(false));
        let unsupported: Vec<&str> = ["clipnorm", "clipvalue", "global_clipnorm", "use_ema", "gradient_accumulation_steps", "loss_scale_factor"]
            .into_iter()
            .filter(|k| set(k))
            .collect();
        if !unsupported.is_empty() {
            return Err(ModelError::KerasConfig(format!("optimizer {name}: {} not supported", unsupported.join(", "))));
        }
        if !name.eq_ignore_ascii_case("adamw") && cfg.get("weight_decay").and_then(J::as_f64).is_some_and(|w| w != 0.0) {
            return Err(ModelError::KerasConfig(format!("optimizer {name}: weight_decay is supported with AdamW only")));
        }
        Ok(match name.to_ascii_lowercase().as_str() {
            "adam" => {
                if cfg.get("amsgrad").and_then(J::as_bool) == Some(true) {
                    return Err(ModelError::KerasConfig("optimizer Adam: amsgrad is not supported".into()));
                }
                OptimizerSpec::Adam {
                    learning_rate: f("learning_rate", 0.001),
                    beta_1: f("beta_1", 0.9) as f32,
                    beta_2: f("beta_2", 0.999) as f32,
                    epsilon: f("epsilon", 1e-7) as f32,
                }
            }
            "adamw" => OptimizerSpec::AdamW {
                learning_rate: f("learning_rate", 0.001),
                weight_decay: f("weight_decay", 0.004) as f32,
                beta_1: f("beta_1", 0.9) as f32,
                beta_2: f("beta_2", 0.999) as f32,
                epsilon: f("epsilon", 1e-7) as f32,
            },
            "sgd" => OptimizerSpec::Sgd {
                learning_rate: f("learning_rate", 0.01),
                momentum: f("momentum", 0.0) as f32,
                nesterov: cfg.get("nesterov").and_then(J::as_bool).unwrap_or(false),
            },
            "rmsprop" => {
                if cfg.get("centered").and_then(J::as_bool) == Some(true) {
                    return Err(ModelError::KerasConfig("optimizer RMSprop: centered is not supported".into()));
                }
                OptimizerSpec::RMSprop {
                    learning_rate: f("learning_rate", 0.001),
                    rho: f("rho", 0.9) as f32,
                    momentum: f("momentum", 0.0) as f32,
                    epsilon: f("epsilon", 1e-7) as f32,
                }
            }
            o => return Err(ModelError::KerasConfig(format!("optimizer {o:?} is not supported (Adam, AdamW, SGD, RMSprop)"))),
        })
    }
}

/// What `model.get_compile_config()` gives tensorcdc: the optimizer and the loss.
#[derive(Debug, Clone, PartialEq)]
pub struct CompileConfig {
    pub optimizer: OptimizerSpec,
    pub loss: Option<Loss>,
    /// The loss takes probabilities (`from_logits: false`, Keras' default).
    pub from_probabilities: bool,
}

impl CompileConfig {
    pub fn from_keras_json(text: &str) -> Result<CompileConfig, ModelError> {
        let doc: J = serde_json::from_str(text).map_err(|e| ModelError::Input(format!("Keras compile config: not JSON: {e}")))?;
        CompileConfig::from_keras_value(&doc)
    }

    /// The compile config already parsed (the `compile_config` of a `.keras` file's `config.json`).
    pub fn from_keras_value(doc: &J) -> Result<CompileConfig, ModelError> {
        let bad = |m: String| ModelError::Input(format!("Keras compile config: {m}"));
        let optimizer = OptimizerSpec::from_keras(doc.get("optimizer").unwrap_or(&J::String("rmsprop".into()))).map_err(|e| bad(e.to_string()))?;
        let (loss, from_probabilities) = match doc.get("loss") {
            None | Some(J::Null) => (None, true),
            Some(J::String(s)) => (Some(Loss::parse(s).map_err(|e| bad(e.to_string()))?), true),
            Some(J::Object(o)) => {
                let cfg = o.get("config").unwrap_or(&J::Null);
                let name = o.get("class_name").and_then(J::as_str).unwrap_or("");
                let loss = match name {
                    "SparseCategoricalCrossentropy" => Loss::SparseCategoricalCrossentropy,
                    "BinaryCrossentropy" => Loss::BinaryCrossentropy,
                    "MeanSquaredError" => Loss::MeanSquaredError,
                    "MeanAbsoluteError" => Loss::MeanAbsoluteError,
                    "Huber" => Loss::Huber { delta: cfg.get("delta").and_then(J::as_f64).unwrap_or(1.0) },
                    o => return Err(bad(format!("loss {o:?} is not supported"))),
                };
                (Some(loss), !cfg.get("from_logits").and_then(J::as_bool).unwrap_or(false))
            }
            Some(_) => return Err(bad("loss: expected a name or a Keras loss config".into())),
        };
        Ok(CompileConfig { optimizer, loss, from_probabilities })
    }
}

/// The optimizer as burn runs it.
#[derive(Debug, Clone, Copy)]
pub struct KerasOptimizer(pub OptimizerSpec);

fn state<const D: usize>(s: Option<AdamState<D>>, p: &Tensor<D>) -> (usize, Tensor<D>, Tensor<D>) {
    match s {
        Some(s) => (s.momentum.time + 1, s.momentum.moment_1, s.momentum.moment_2),
        None => (1, p.zeros_like(), p.zeros_like()),
    }
}

impl Optimizer for KerasOptimizer {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(&self, lr: LearningRate, p: Tensor<D>, g: Tensor<D>, s: Option<AdamState<D>>) -> (Tensor<D>, Option<AdamState<D>>) {
        let lr32 = lr as f32;
        let keep = |t, m, v| Some(AdamState::new(AdaptiveMomentumState::new(t, m, v)));
        match self.0 {
            OptimizerSpec::Adam { beta_1, beta_2, epsilon, .. } => FusedAdam { beta_1, beta_2, epsilon }.step(lr, p, g, s),
            OptimizerSpec::AdamW { weight_decay, beta_1, beta_2, epsilon, .. } => {
                let p = p.clone() - p.mul_scalar(weight_decay * lr32);
                FusedAdam { beta_1, beta_2, epsilon }.step_tensors(lr, p, g, s)
            }
            OptimizerSpec::Sgd { momentum, nesterov, .. } => {
                let (t, m, v) = state(s, &p);
                if momentum == 0.0 {
                    return (p - g.mul_scalar(lr32), keep(t, m, v));
                }
                let m = m.mul_scalar(momentum) - g.clone().mul_scalar(lr32);
                let p = if nesterov { p + m.clone().mul_scalar(momentum) - g.mul_scalar(lr32) } else { p + m.clone() };
                (p, keep(t, m, v))
            }
            OptimizerSpec::RMSprop { rho, momentum, epsilon, .. } => {
                let (t, m, v) = state(s, &p);
                let v = v.mul_scalar(rho) + g.clone().square().mul_scalar(1.0 - rho);
                let inc = g.mul_scalar(lr32) / v.clone().add_scalar(epsilon).sqrt();
                if momentum > 0.0 {
                    let m = m.mul_scalar(momentum) + inc;
                    (p - m.clone(), keep(t, m, v))
                } else {
                    (p - inc, keep(t, m, v))
                }
            }
        }
    }

    fn to_device<const D: usize>(mut s: AdamState<D>, device: &Device) -> AdamState<D> {
        s.momentum.moment_1 = s.momentum.moment_1.to_device(device);
        s.momentum.moment_2 = s.momentum.moment_2.to_device(device);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    /// Keras 3's update rules written out in f64, one parameter vector, `steps` gradients.
    fn keras(spec: OptimizerSpec, start: &[f64], steps: &[Vec<f64>]) -> Vec<f64> {
        let mut p = start.to_vec();
        let (mut m, mut v) = (vec![0.0; p.len()], vec![0.0; p.len()]);
        for (t, g) in steps.iter().enumerate() {
            let t = (t + 1) as i32;
            for i in 0..p.len() {
                let g = g[i];
                match spec {
                    OptimizerSpec::Sgd { learning_rate: lr, momentum, nesterov } => {
                        let mo = momentum as f64;
                        if mo == 0.0 {
                            p[i] -= lr * g;
                        } else {
                            m[i] = mo * m[i] - lr * g;
                            p[i] += if nesterov { mo * m[i] - lr * g } else { m[i] };
                        }
                    }
                    OptimizerSpec::RMSprop { learning_rate: lr, rho, momentum, epsilon } => {
                        let (rho, mo, eps) = (rho as f64, momentum as f64, epsilon as f64);
                        v[i] = rho * v[i] + (1.0 - rho) * g * g;
                        let inc = lr * g / (v[i] + eps).sqrt();
                        if mo > 0.0 {
                            m[i] = mo * m[i] + inc;
                            p[i] -= m[i];
                        } else {
                            p[i] -= inc;
                        }
                    }
                    OptimizerSpec::AdamW { learning_rate: lr, weight_decay, beta_1, beta_2, epsilon } => {
                        let (b1, b2, eps, wd) = (beta_1 as f64, beta_2 as f64, epsilon as f64, weight_decay as f64);
                        p[i] -= p[i] * wd * lr;
                        let alpha = lr * (1.0 - b2.powi(t)).sqrt() / (1.0 - b1.powi(t));
                        m[i] += (g - m[i]) * (1.0 - b1);
                        v[i] += (g * g - v[i]) * (1.0 - b2);
                        p[i] -= m[i] * alpha / (v[i].sqrt() + eps);
                    }
                    OptimizerSpec::Adam { .. } => unreachable!("checked in adam.rs"),
                }
            }
        }
        p
    }

    #[test]
    fn first_steps_match_keras() {
        let device = crate::default_device();
        let start: Vec<f64> = (0..40).map(|i| ((i * 13 % 17) as f64 - 8.0) / 10.0).collect();
        let grads: Vec<Vec<f64>> = (0..3).map(|s| (0..40).map(|i| (((i + 5 * s) * 7 % 11) as f64 - 5.0) / (4.0 + s as f64)).collect()).collect();
        let specs = [
            OptimizerSpec::Sgd { learning_rate: 0.01, momentum: 0.0, nesterov: false },
            OptimizerSpec::Sgd { learning_rate: 0.01, momentum: 0.9, nesterov: false },
            OptimizerSpec::Sgd { learning_rate: 0.01, momentum: 0.9, nesterov: true },
            OptimizerSpec::RMSprop { learning_rate: 0.001, rho: 0.9, momentum: 0.0, epsilon: 1e-7 },
            OptimizerSpec::RMSprop { learning_rate: 0.001, rho: 0.9, momentum: 0.5, epsilon: 1e-7 },
            OptimizerSpec::AdamW { learning_rate: 0.001, weight_decay: 0.004, beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7 },
        ];
        let t = |x: &[f64]| Tensor::<2>::from_data(TensorData::new(x.iter().map(|&v| v as f32).collect::<Vec<_>>(), [8, 5]), &device);
        for spec in specs {
            let opt = KerasOptimizer(spec);
            let (mut p, mut s) = (t(&start), None);
            for g in &grads {
                (p, s) = opt.step(spec.learning_rate(), p, t(g), s);
            }
            let got = p.into_data().try_to_vec::<f32>().unwrap();
            let want = keras(spec, &start, &grads);
            let worst = got.iter().zip(&want).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
            let moved = got.iter().zip(&start).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
            assert!(worst < 2e-6 && moved > 1e-3, "{spec:?}: largest difference from Keras {worst}, largest move {moved}");
        }
    }

    #[test]
    fn compile_config_as_keras_writes_it() {
        let text = r#"{"optimizer": {"module": "keras.optimizers", "class_name": "SGD", "config": {"name": "SGD", "learning_rate": 0.05, "momentum": 0.9, "nesterov": true}, "registered_name": null},
            "loss": {"module": "keras.losses", "class_name": "SparseCategoricalCrossentropy", "config": {"name": "sparse_categorical_crossentropy", "reduction": "sum_over_batch_size", "from_logits": true, "ignore_class": null}},
            "loss_weights": null, "metrics": ["accuracy"], "weighted_metrics": null, "run_eagerly": false, "steps_per_execution": 1, "jit_compile": false}"#;
        let c = CompileConfig::from_keras_json(text).unwrap();
        assert_eq!(c.optimizer, OptimizerSpec::Sgd { learning_rate: 0.05, momentum: 0.9, nesterov: true });
        assert_eq!((c.loss, c.from_probabilities), (Some(Loss::SparseCategoricalCrossentropy), false));
        let c = CompileConfig::from_keras_json(r#"{"optimizer": "adamw", "loss": "mse"}"#).unwrap();
        assert!(matches!(c.optimizer, OptimizerSpec::AdamW { weight_decay, .. } if weight_decay == 0.004));
        let e = CompileConfig::from_keras_json(r#"{"optimizer": "lion", "loss": "mse"}"#).unwrap_err().to_string();
        assert!(e.contains("\"lion\""), "{e}");
    }
}
