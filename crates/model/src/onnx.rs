//! ONNX models in, through tract (pure Rust; nothing is downloaded at build time): a graph
//! of one float input `[batch, ...]` (Keras' own `model.export(..., format="onnx")`,
//! tf2onnx, `torch.onnx`), fed the feature vector reshaped to the input's own dimensions
//! (784 features are a `[28, 28, 1]` image when the graph says so). The batch dimension is
//! a symbol, so any batch runs; a graph that computes shapes from its input (tf2onnx's
//! Flatten) is planned for batches of 64, the last one padded. The output read is the graph's only one, else the float
//! output named like `prob*` (scikit-learn's `probabilities`), else its first float output.
//! Its rows are class probabilities when they are (each in [0, 1], summing to 1), else
//! logits, turned into probabilities by a softmax; one column is a regression's value.
//! A graph of one input per column (a scikit-learn pipeline exported by skl2onnx) is fed
//! the table's columns by name: its feature spec (`<file>.features.json`) names the columns
//! and their kinds, a float input takes the column's number and a string input its text
//! (the category the encoding kept; an unseen one, which the spec's last slot holds, as
//! ""). Two ONNX-ML operators tract 0.23 lacks are rewritten into standard ones before
//! tract reads the graph: `Scaler` into `Sub` and `Mul`, and a string `OneHotEncoder` into
//! `CategoryMapper` (which tract has), `OneHot` and `Slice` (an unseen category maps to one
//! slot past the categories, sliced off, so its row is all zeros, as `zeros=1` asks). Any other operator tract does not
//! implement is an error naming it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tract_onnx::pb;
use tract_onnx::prelude::*;

use tensorcdc_dataset::features::{FeatureSpec, Kind};

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
    /// A graph of one input per column: each input's place in the feature vector.
    columns: Vec<ColumnInput>,
    pub output_name: String,
    /// Values per example out (classes, or 1).
    pub outputs: usize,
    /// One output served as a two-class model (a sigmoid's `p`, as Keras and tensorcdc export
    /// a binary classifier): each row becomes `[1 - p, p]`.
    pub binary: bool,
    path: PathBuf,
}

/// One input of a graph fed by column.
struct ColumnInput {
    /// Where the column's encoding starts in the feature vector, and how to read it back.
    offset: usize,
    read: ColumnRead,
}

enum ColumnRead {
    /// A number: `x * scale + shift` undoes the spec's scaling.
    Number { shift: f64, scale: f64 },
    /// Text: the category whose one-hot slot is set ("" for the unseen slot).
    Text { vocab: Vec<String> },
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

fn attr<'a>(n: &'a pb::NodeProto, name: &str) -> Option<&'a pb::AttributeProto> {
    n.attribute.iter().find(|a| a.name == name)
}

/// Rewrites the ONNX-ML operators tract lacks into ones it has (see the module's notes).
fn rewrite_ml(graph: &mut pb::GraphProto) {
    let mut nodes = Vec::with_capacity(graph.node.len());
    let mut inits = Vec::new();
    for (k, n) in std::mem::take(&mut graph.node).into_iter().enumerate() {
        let floats = |name: &str, v: Vec<f32>| pb::TensorProto {
            name: name.into(),
            dims: vec![v.len() as i64],
            data_type: pb::tensor_proto::DataType::Float as i32,
            float_data: v,
            ..Default::default()
        };
        let node = |op: &str, inputs: Vec<String>, output: String, attribute: Vec<pb::AttributeProto>, domain: &str| pb::NodeProto {
            name: format!("{}_{k}_{op}", n.name),
            op_type: op.into(),
            domain: domain.into(),
            input: inputs,
            output: vec![output],
            attribute,
            ..Default::default()
        };
        match (n.op_type.as_str(), n.domain.as_str()) {
            ("Scaler", "ai.onnx.ml") => {
                let get = |a: &str| attr(&n, a).map(|a| a.floats.clone()).unwrap_or_default();
                let (offset, scale) = (format!("{}_{k}_offset", n.name), format!("{}_{k}_scale", n.name));
                inits.push(floats(&offset, get("offset")));
                inits.push(floats(&scale, get("scale")));
                let mid = format!("{}_{k}_centred", n.name);
                nodes.push(node("Sub", vec![n.input[0].clone(), offset], mid.clone(), vec![], ""));
                nodes.push(node("Mul", vec![mid, scale], n.output[0].clone(), vec![], ""));
            }
            ("OneHotEncoder", "ai.onnx.ml") if attr(&n, "cats_strings").is_some_and(|a| !a.strings.is_empty()) => {
                let cats = attr(&n, "cats_strings").map(|a| a.strings.clone()).unwrap_or_default();
                let c = cats.len() as i64;
                let ints = |name: &str, v: Vec<i64>| pb::AttributeProto {
                    name: name.into(),
                    ints: v,
                    r#type: pb::attribute_proto::AttributeType::Ints as i32,
                    ..Default::default()
                };
                let mapper_attrs = vec![
                    pb::AttributeProto {
                        name: "cats_strings".into(),
                        strings: cats,
                        r#type: pb::attribute_proto::AttributeType::Strings as i32,
                        ..Default::default()
                    },
                    ints("cats_int64s", (0..c).collect()),
                    pb::AttributeProto { name: "default_int64".into(), i: c, r#type: pb::attribute_proto::AttributeType::Int as i32, ..Default::default() },
                ];
                let index = format!("{}_{k}_index", n.name);
                nodes.push(node("CategoryMapper", vec![n.input[0].clone()], index.clone(), mapper_attrs, "ai.onnx.ml"));
                // One slot more for the unseen (tract's OneHot does not take an index past the
                // end), sliced off: an unseen category's row is all zeros.
                let (depth, values) = (format!("{}_{k}_depth", n.name), format!("{}_{k}_values", n.name));
                let int64s = |name: &str, v: Vec<i64>| pb::TensorProto {
                    name: name.into(),
                    dims: vec![v.len() as i64],
                    data_type: pb::tensor_proto::DataType::Int64 as i32,
                    int64_data: v,
                    ..Default::default()
                };
                inits.push(pb::TensorProto {
                    name: depth.clone(),
                    data_type: pb::tensor_proto::DataType::Int64 as i32,
                    int64_data: vec![c + 1],
                    ..Default::default()
                });
                inits.push(floats(&values, vec![0.0, 1.0]));
                let axis = pb::AttributeProto { name: "axis".into(), i: -1, r#type: pb::attribute_proto::AttributeType::Int as i32, ..Default::default() };
                let wide = format!("{}_{k}_wide", n.name);
                nodes.push(node("OneHot", vec![index, depth, values], wide.clone(), vec![axis], ""));
                let (starts, ends, axes) = (format!("{}_{k}_starts", n.name), format!("{}_{k}_ends", n.name), format!("{}_{k}_axes", n.name));
                inits.push(int64s(&starts, vec![0]));
                inits.push(int64s(&ends, vec![c]));
                inits.push(int64s(&axes, vec![-1]));
                nodes.push(node("Slice", vec![wide, starts, ends, axes], n.output[0].clone(), vec![], ""));
            }
            _ => nodes.push(n),
        }
    }
    graph.node = nodes;
    graph.initializer.extend(inits);
}

impl OnnxPredictor {
    /// Loads `path` and plans it for any batch size. `spec`: the feature spec that maps a
    /// graph of one input per column to the feature vector.
    pub fn load(path: &Path, spec: Option<&FeatureSpec>) -> Result<OnnxPredictor, ModelError> {
        let onnx = tract_onnx::onnx();
        let mut proto = onnx.proto_model_for_path(path).map_err(|e| err(path, format!("not an ONNX model: {e}")))?;
        if let Some(g) = proto.graph.as_mut() {
            rewrite_ml(g);
        }
        let graph = proto.graph.as_ref().ok_or_else(|| err(path, "no graph"))?;
        let missing = unknown_ops(graph);
        if !missing.is_empty() {
            return Err(err(path, format!("operator(s) that tract does not implement: {}", missing.join(", "))));
        }
        let initialisers: std::collections::HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
        let inputs: Vec<&pb::ValueInfoProto> = graph.input.iter().filter(|i| !initialisers.contains(i.name.as_str())).collect();
        let by_column = inputs.len() > 1 || inputs.iter().any(|i| !dims_of(i).1);
        let (input_shape, columns) = if by_column {
            let spec = spec.ok_or_else(|| {
                let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
                err(path, format!("the graph takes one input per column ({}): give their feature spec in {}.features.json", names.join(", "), path.display()))
            })?;
            (vec![spec.width()], column_inputs(path, &inputs, spec)?)
        } else {
            let input = inputs.first().ok_or_else(|| err(path, "the graph has no input"))?;
            let (dims, _) = dims_of(input);
            match dims.iter().skip(1).copied().collect::<Option<Vec<usize>>>() {
                Some(s) if !s.is_empty() => (s, Vec::new()),
                _ => return Err(err(path, format!("input {:?}: expected float [batch, features...] with known feature dimensions, got {dims:?}", input.name))),
            }
        };
        let input = inputs[0];
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
            if columns.is_empty() {
                shape.extend(input_shape.iter().map(|&d| d.to_dim()));
                model = model.with_input_fact(0, f32::fact(shape).into())?;
            } else {
                shape.push(1.to_dim());
                for (i, c) in columns.iter().enumerate() {
                    let fact = match c.read {
                        ColumnRead::Number { .. } => f32::fact(shape.clone()),
                        ColumnRead::Text { .. } => String::fact(shape.clone()),
                    };
                    model = model.with_input_fact(i, fact.into())?;
                }
            }
            let outlet = model.output_outlets()?[index];
            model.select_output_outlets(&[outlet])?;
            model.into_optimized()?.into_runnable()
        };
        let (plan, fixed_batch) = match plan_for(None) {
            Ok(p) => (p, None),
            Err(_) => (plan_for(Some(FIXED_BATCH)).map_err(|e| err(path, format!("{e:#}")))?, Some(FIXED_BATCH)),
        };
        let mut p = OnnxPredictor {
            plan,
            fixed_batch,
            input_shape,
            input_name: input.name.clone(),
            columns,
            output_name: output.name.clone(),
            outputs: 0,
            binary: false,
            path: path.into(),
        };
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
        let inputs: TVec<TValue> = if self.columns.is_empty() {
            let mut shape = vec![n];
            shape.extend(&self.input_shape);
            tvec!(Tensor::from_shape(&shape, x).map_err(|e| err(&self.path, format!("{e:#}")))?.into_tvalue())
        } else {
            let width = self.width();
            let rows = || x.chunks(width);
            self.columns
                .iter()
                .map(|c| {
                    let t: Tensor = match &c.read {
                        ColumnRead::Number { shift, scale } => {
                            let v: Vec<f32> = rows().map(|r| (r[c.offset] as f64 * scale + shift) as f32).collect();
                            tract_ndarray::Array2::from_shape_vec((n, 1), v).expect("n values").into()
                        }
                        ColumnRead::Text { vocab } => {
                            let v: Vec<String> = rows()
                                .map(|r| {
                                    let slots = &r[c.offset..c.offset + vocab.len() + 1];
                                    let (i, on) = crate::argmax(slots);
                                    if on > 0.0 && i < vocab.len() {
                                        vocab[i].clone()
                                    } else {
                                        String::new()
                                    }
                                })
                                .collect();
                            tract_ndarray::Array2::from_shape_vec((n, 1), v).expect("n values").into()
                        }
                    };
                    t.into_tvalue()
                })
                .collect()
        };
        let out = self.plan.run(inputs).map_err(|e| err(&self.path, format!("running the model: {e:#}")))?;
        let v = out[0].cast_to::<f32>().map_err(|e| err(&self.path, format!("{e:#}")))?;
        let v = v.to_plain_array_view::<f32>().map_err(|e| err(&self.path, format!("{e:#}")))?;
        Ok(v.iter().copied().collect())
    }

    /// One output row per example: class probabilities (see the module's notes), or the value.
    pub fn predict(&self, x: &[f32], width: usize) -> Result<Vec<Vec<f32>>, ModelError> {
        self.predict_in(x, width, 1024)
    }

    fn predict_in(&self, x: &[f32], width: usize, batch: usize) -> Result<Vec<Vec<f32>>, ModelError> {
        if width != self.width() || x.is_empty() || !x.len().is_multiple_of(width) {
            return Err(ModelError::Input(format!("{} values for a model of {} inputs", x.len(), self.width())));
        }
        let n = x.len() / width;
        let mut rows = Vec::with_capacity(n);
        for chunk in x.chunks(batch.max(1) * width) {
            let m = chunk.len() / width;
            let v = self.run(chunk, m)?;
            let k = v.len() / m;
            rows.extend(v.chunks(k).map(|r| match (k, self.binary) {
                (1, true) => vec![1.0 - r[0], r[0]],
                (1, false) => r.to_vec(),
                _ => probabilities(r),
            }));
        }
        Ok(rows)
    }

    /// Keras' metrics over `data`: accuracy and mean cross-entropy, or absolute and squared errors.
    pub fn evaluate(&self, data: &Data, batch_size: usize) -> Result<FitMetrics, ModelError> {
        let p = self.predict_in(&data.x, data.width, batch_size)?;
        let mut m = FitMetrics { n: data.len(), ..Default::default() };
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

/// Each input of a graph fed by column, found in the feature spec by name.
fn column_inputs(path: &Path, inputs: &[&pb::ValueInfoProto], spec: &FeatureSpec) -> Result<Vec<ColumnInput>, ModelError> {
    let mut offset = 0;
    let mut at = std::collections::HashMap::new();
    for c in &spec.columns {
        at.insert(c.name.as_str(), (offset, c));
        offset += c.width;
    }
    inputs
        .iter()
        .map(|i| {
            let (offset, col) = at.get(i.name.as_str()).ok_or_else(|| {
                err(
                    path,
                    format!(
                        "input {:?} is not a column of the feature spec ({})",
                        i.name,
                        spec.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                )
            })?;
            let read = match (dims_of(i).1, col.kind) {
                (true, Kind::Number | Kind::Boolean) => ColumnRead::Number { shift: col.shift, scale: col.scale },
                (false, Kind::Category) if col.width == col.vocab.len() + 1 => ColumnRead::Text { vocab: col.vocab.clone() },
                (false, Kind::Category) => {
                    return Err(err(path, format!("column {:?}: width {} is not its {} categories and the unseen slot", col.name, col.width, col.vocab.len())))
                }
                (float, kind) => {
                    return Err(err(
                        path,
                        format!("input {:?} is {} but its column is {kind:?} in the feature spec", i.name, if float { "float" } else { "not float (text)" }),
                    ))
                }
            };
            Ok(ColumnInput { offset: *offset, read })
        })
        .collect()
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
