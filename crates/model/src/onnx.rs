//! ONNX models in, through tract (pure Rust; nothing is downloaded at build time): a graph
//! of one float input `[batch, ...]` (Keras' own `model.export(..., format="onnx")`,
//! tf2onnx, `torch.onnx`), fed the feature vector reshaped to the input's own dimensions
//! (784 features are a `[28, 28, 1]` image when the graph says so). The batch dimension is
//! a symbol, so any batch runs; a graph that computes shapes from its input (tf2onnx's
//! Flatten) is planned for batches of 64, the last one padded. The output read is the graph's only one, else the float
//! output named like `prob*` (scikit-learn's `probabilities`), else its first float output.
//! Its rows are class probabilities when they are (each in [0, 1], summing to 1), else
//! logits, turned into probabilities by a softmax; one column is a regression's value.
//! An operator tract does not implement is an error naming it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tract_onnx::pb;
use tract_onnx::prelude::*;

use crate::sequential::{Data, FitMetrics, Targets};
use crate::ModelError;

/// A loaded ONNX model, ready to run.
pub struct OnnxPredictor {
    plan: Arc<TypedRunnableModel>,
    /// The batch the plan is fixed to (the last one of a call padded with zeros), when the
    /// graph does not run with a symbolic one.
    fixed_batch: Option<usize>,
    /// One example's input dimensions (the batch dimension left out).
    pub input_shape: Vec<usize>,
    pub input_name: String,
    pub output_name: String,
    /// Values per example out (classes, or 1).
    pub outputs: usize,
    path: PathBuf,
}

/// The batch of a graph that cannot be planned for any batch.
const FIXED_BATCH: usize = 64;

fn err(path: &Path, reason: impl Into<String>) -> ModelError {
    ModelError::Checkpoint { path: path.into(), reason: reason.into() }
}

/// Whether `path` is an `.onnx` file.
pub fn is_onnx_file(path: &Path) -> bool {
    path.is_file() && path.extension().is_some_and(|e| e == "onnx")
}

/// The dimensions of a value's tensor type (`None` for a symbolic or missing one), and
/// whether it is float.
fn dims_of(v: &pb::ValueInfoProto) -> (Vec<Option<usize>>, bool) {
    let Some(pb::type_proto::Value::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return (Vec::new(), false);
    };
    let float = t.elem_type == pb::tensor_proto::DataType::Float as i32;
    let dims = t
        .shape
        .as_ref()
        .map(|s| {
            s.dim
                .iter()
                .map(|d| match &d.value {
                    Some(pb::tensor_shape_proto::dimension::Value::DimValue(n)) if *n > 0 => Some(*n as usize),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    (dims, float)
}

/// The operators of `graph` that tract's ONNX importer does not know.
fn unknown_ops(graph: &pb::GraphProto) -> Vec<String> {
    let known = tract_onnx::onnx();
    let mut out: Vec<String> = graph
        .node
        .iter()
        .filter(|n| !known.op_register.0.contains_key(&n.op_type))
        .map(|n| if n.domain.is_empty() { n.op_type.clone() } else { format!("{} ({})", n.op_type, n.domain) })
        .collect();
    out.sort();
    out.dedup();
    out
}

impl OnnxPredictor {
    /// Loads `path` and plans it for any batch size.
    pub fn load(path: &Path) -> Result<OnnxPredictor, ModelError> {
        let onnx = tract_onnx::onnx();
        let proto = onnx.proto_model_for_path(path).map_err(|e| err(path, format!("not an ONNX model: {e}")))?;
        let graph = proto.graph.as_ref().ok_or_else(|| err(path, "no graph"))?;
        let missing = unknown_ops(graph);
        if !missing.is_empty() {
            return Err(err(path, format!("operator(s) that tract does not implement: {}", missing.join(", "))));
        }
        let initialisers: std::collections::HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
        let inputs: Vec<&pb::ValueInfoProto> = graph.input.iter().filter(|i| !initialisers.contains(i.name.as_str())).collect();
        let [input] = inputs[..] else {
            let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
            return Err(err(path, format!("the graph has {} inputs ({}); one float input [batch, features...] is supported", names.len(), names.join(", "))));
        };
        let (dims, float) = dims_of(input);
        let input_shape: Option<Vec<usize>> = dims.iter().skip(1).copied().collect();
        let input_shape = match (float, input_shape) {
            (true, Some(s)) if !dims.is_empty() && !s.is_empty() => s,
            _ => return Err(err(path, format!("input {:?}: expected float [batch, features...] with known feature dimensions, got {dims:?}", input.name))),
        };
        let floats: Vec<(usize, &pb::ValueInfoProto)> = graph.output.iter().enumerate().filter(|(_, o)| dims_of(o).1).collect();
        let (index, output) = match (graph.output.len(), floats.iter().find(|(_, o)| o.name.to_lowercase().starts_with("prob")), floats.first()) {
            (1, _, Some(o)) => *o,
            (_, Some(o), _) | (_, None, Some(o)) => *o,
            _ => return Err(err(path, "no float output")),
        };
        // A symbolic batch first; a graph that computes shapes from its input (tf2onnx's
        // Flatten: Shape, Slice, Concat, Reshape) is planned for a fixed batch instead.
        let plan_for = |batch: Option<usize>| -> TractResult<Arc<TypedRunnableModel>> {
            let mut model = onnx.model_for_proto_model(&proto)?;
            let mut shape: TVec<TDim> = tvec![match batch {
                Some(b) => b.to_dim(),
                None => model.sym("N").into(),
            }];
            shape.extend(input_shape.iter().map(|&d| d.to_dim()));
            model = model.with_input_fact(0, f32::fact(shape).into())?;
            let outlet = model.output_outlets()?[index];
            model.select_output_outlets(&[outlet])?;
            model.into_optimized()?.into_runnable()
        };
        let (plan, fixed_batch) = match plan_for(None) {
            Ok(p) => (p, None),
            Err(_) => (plan_for(Some(FIXED_BATCH)).map_err(|e| err(path, format!("{e:#}")))?, Some(FIXED_BATCH)),
        };
        let mut p = OnnxPredictor { plan, fixed_batch, input_shape, input_name: input.name.clone(), output_name: output.name.clone(), outputs: 0, path: path.into() };
        let width = p.width();
        p.outputs = p.run(&vec![0.0; width], 1)?.len();
        Ok(p)
    }

    /// Features per example.
    pub fn width(&self) -> usize {
        self.input_shape.iter().product()
    }

    /// The raw output of `n` examples, row-major.
    fn run(&self, x: &[f32], n: usize) -> Result<Vec<f32>, ModelError> {
        let Some(b) = self.fixed_batch else {
            return self.run_batch(x, n);
        };
        let width = self.width();
        let mut out = Vec::new();
        for chunk in x.chunks(b * width) {
            let m = chunk.len() / width;
            let mut padded = chunk.to_vec();
            padded.resize(b * width, 0.0);
            let v = self.run_batch(&padded, b)?;
            out.extend_from_slice(&v[..v.len() / b * m]);
        }
        Ok(out)
    }

    fn run_batch(&self, x: &[f32], n: usize) -> Result<Vec<f32>, ModelError> {
        let mut shape = vec![n];
        shape.extend(&self.input_shape);
        let t = Tensor::from_shape(&shape, x).map_err(|e| err(&self.path, format!("{e:#}")))?;
        let out = self.plan.run(tvec!(t.into_tvalue())).map_err(|e| err(&self.path, format!("running the model: {e:#}")))?;
        let v = out[0].cast_to::<f32>().map_err(|e| err(&self.path, format!("{e:#}")))?;
        let v = v.to_plain_array_view::<f32>().map_err(|e| err(&self.path, format!("{e:#}")))?;
        Ok(v.iter().copied().collect())
    }

    /// One output row per example: class probabilities (see the module's notes), or the value.
    pub fn predict(&self, x: &[f32], width: usize) -> Result<Vec<Vec<f32>>, ModelError> {
        if width != self.width() || x.is_empty() || x.len() % width != 0 {
            return Err(ModelError::Input(format!("{} values for a model of {} inputs", x.len(), self.width())));
        }
        let n = x.len() / width;
        let mut rows = Vec::with_capacity(n);
        for chunk in x.chunks(1024 * width) {
            let m = chunk.len() / width;
            let v = self.run(chunk, m)?;
            let k = v.len() / m;
            rows.extend(v.chunks(k).map(|r| if k > 1 { probabilities(r) } else { r.to_vec() }));
        }
        Ok(rows)
    }

    /// Keras' metrics over `data`: accuracy and mean cross-entropy, or absolute and squared errors.
    pub fn evaluate(&self, data: &Data, batch_size: usize) -> Result<FitMetrics, ModelError> {
        let p = self.predict(&data.x, data.width)?;
        let mut m = FitMetrics { n: data.len(), ..Default::default() };
        let _ = batch_size;
        match &data.y {
            Targets::Classes(c) => {
                for (row, &y) in p.iter().zip(c) {
                    m.correct += (crate::argmax(row).0 as i64 == y) as usize;
                    m.loss_sum += -(row.get(y as usize).copied().unwrap_or(0.0).max(1e-12) as f64).ln();
                }
            }
            Targets::Values(v) => {
                for (row, &y) in p.iter().zip(v) {
                    let d = (row[0] - y) as f64;
                    m.abs_err += d.abs();
                    m.sq_err += d * d;
                    m.loss_sum += d * d;
                }
            }
        }
        Ok(m)
    }
}

/// A row as probabilities: itself when it is already (each in [0, 1], summing to 1 within
/// 1e-4), else its softmax.
fn probabilities(r: &[f32]) -> Vec<f32> {
    let sum: f32 = r.iter().sum();
    if r.iter().all(|p| (0.0..=1.0).contains(p)) && (sum - 1.0).abs() < 1e-4 {
        return r.to_vec();
    }
    let max = r.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f64> = r.iter().map(|z| ((z - max) as f64).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|x| (x / s) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_pass_and_logits_become_them() {
        assert_eq!(probabilities(&[0.25, 0.75]), vec![0.25, 0.75]);
        // softmax([0, ln 3]) = [1/4, 3/4]
        let p = probabilities(&[0.0, 3f32.ln()]);
        assert!((p[0] - 0.25).abs() < 1e-6 && (p[1] - 0.75).abs() < 1e-6, "{p:?}");
        let p = probabilities(&[2.0, -1.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6 && p[0] > p[1], "{p:?}");
    }
}
