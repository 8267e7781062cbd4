//! tensorcdc's model out to ONNX (opset 13, written with tract-onnx's protobuf types): one
//! float input `input` `[batch, features]` (the feature vector tensorcdc encodes) and one
//! output `probabilities` `[batch, classes]` (a softmax over the last layer's output for a
//! classifier, a sigmoid for a one-unit binary one) or `value` `[batch, 1]`: what
//! tensorcdc's `predict` gives, so onnxruntime, Triton or any ONNX runtime serves the same
//! numbers. Images run in ONNX's NCHW layout between a Reshape and Transpose after the
//! input and a Transpose back to Keras' channel-last order before each Flatten; Dropout is
//! left out (inference).

use std::path::Path;

use burn::tensor::Tensor;
use prost::Message;
use tract_onnx::pb;

use super::fit::Loss;
use super::net::Net;
use super::spec::{Activation, Layer, Padding, SequentialSpec};
use crate::ModelError;

struct Graph {
    nodes: Vec<pb::NodeProto>,
    inits: Vec<pb::TensorProto>,
    n: usize,
}

fn attr_ints(name: &str, v: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto { name: name.into(), ints: v.to_vec(), r#type: pb::attribute_proto::AttributeType::Ints as i32, ..Default::default() }
}

fn attr_int(name: &str, v: i64) -> pb::AttributeProto {
    pb::AttributeProto { name: name.into(), i: v, r#type: pb::attribute_proto::AttributeType::Int as i32, ..Default::default() }
}

fn attr_float(name: &str, v: f32) -> pb::AttributeProto {
    pb::AttributeProto { name: name.into(), f: v, r#type: pb::attribute_proto::AttributeType::Float as i32, ..Default::default() }
}

impl Graph {
    /// Adds a node of `op` on `inputs`; returns its output's name.
    fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<pb::AttributeProto>) -> String {
        self.n += 1;
        let out = format!("{}_{}", op.to_lowercase(), self.n);
        self.nodes.push(pb::NodeProto {
            name: out.clone(),
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            attribute: attrs,
            ..Default::default()
        });
        out
    }

    fn floats(&mut self, dims: &[usize], v: Vec<f32>) -> String {
        self.n += 1;
        let name = format!("w_{}", self.n);
        self.inits.push(pb::TensorProto {
            name: name.clone(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: pb::tensor_proto::DataType::Float as i32,
            float_data: v,
            ..Default::default()
        });
        name
    }

    fn ints(&mut self, v: &[i64]) -> String {
        self.n += 1;
        let name = format!("shape_{}", self.n);
        self.inits.push(pb::TensorProto {
            name: name.clone(),
            dims: vec![v.len() as i64],
            data_type: pb::tensor_proto::DataType::Int64 as i32,
            int64_data: v.to_vec(),
            ..Default::default()
        });
        name
    }

    fn tensor<const D: usize>(&mut self, t: Tensor<D>) -> String {
        let dims = t.dims().to_vec();
        let v = t.into_data().try_to_vec::<f32>().unwrap_or_default();
        self.floats(&dims, v)
    }

    /// An activation on `x`; `image`: softmax over the channels (axis 1 in NCHW).
    fn activate(&mut self, a: Activation, x: String, image: bool) -> String {
        match a {
            Activation::Linear => x,
            Activation::Relu => self.node("Relu", &[&x], vec![]),
            Activation::Sigmoid => self.node("Sigmoid", &[&x], vec![]),
            Activation::Tanh => self.node("Tanh", &[&x], vec![]),
            Activation::Softmax => self.node("Softmax", &[&x], vec![attr_int("axis", if image { 1 } else { -1 })]),
            Activation::Elu => self.node("Elu", &[&x], vec![attr_float("alpha", 1.0)]),
            // ONNX's defaults are Keras' constants.
            Activation::Selu => self.node("Selu", &[&x], vec![]),
            Activation::Gelu => {
                // 0.5 x (1 + erf(x / sqrt 2)), Keras' exact gelu.
                let r2 = self.floats(&[], vec![std::f32::consts::SQRT_2]);
                let (one, half) = (self.floats(&[], vec![1.0]), self.floats(&[], vec![0.5]));
                let d = self.node("Div", &[&x, &r2], vec![]);
                let e = self.node("Erf", &[&d], vec![]);
                let p = self.node("Add", &[&e, &one], vec![]);
                let m = self.node("Mul", &[&x, &p], vec![]);
                self.node("Mul", &[&m, &half], vec![])
            }
        }
    }
}

/// `[top, left, bottom, right]` pads of ONNX for Keras' padding of a window over `[h, w]`.
fn pads(p: Padding, [h, w]: [usize; 2], k: [usize; 2], s: [usize; 2]) -> Vec<i64> {
    let one = |len: usize, k: usize, s: usize| -> (i64, i64) {
        match p {
            Padding::Valid => (0, 0),
            Padding::Same => {
                let total = ((len.div_ceil(s) - 1) * s + k).saturating_sub(len) as i64;
                (total / 2, total - total / 2)
            }
        }
    };
    let ((t, b), (l, r)) = (one(h, k[0], s[0]), one(w, k[1], s[1]));
    vec![t, l, b, r]
}

/// The ONNX model of `spec` with `net`'s weights.
pub fn onnx_model(spec: &SequentialSpec, loss: Loss, net: &Net) -> Result<pb::ModelProto, ModelError> {
    let shapes = spec.input_shapes()?;
    let mut g = Graph { nodes: Vec::new(), inits: Vec::new(), n: 0 };
    let mut x = "input".to_string();
    let mut image = false;
    let to_image = |g: &mut Graph, x: &str, [h, w, c]: [usize; 3]| -> String {
        let shape = g.ints(&[-1, h as i64, w as i64, c as i64]);
        let r = g.node("Reshape", &[x, &shape], vec![]);
        g.node("Transpose", &[&r], vec![attr_ints("perm", &[0, 3, 1, 2])])
    };
    let to_flat = |g: &mut Graph, x: &str| -> String {
        let t = g.node("Transpose", &[x], vec![attr_ints("perm", &[0, 2, 3, 1])]);
        g.node("Flatten", &[&t], vec![attr_int("axis", 1)])
    };
    if let Some(&[h, w, c]) = spec.input_shape.as_deref() {
        x = to_image(&mut g, &x, [h, w, c]);
        image = true;
    }
    let last = spec.last_active();
    let (mut di, mut ci, mut ni) = (0, 0, 0);
    for (i, (l, shape)) in spec.layers.iter().zip(&shapes).enumerate() {
        let act = match l {
            Layer::Dense { activation, .. } => {
                let d = &net.dense[di];
                di += 1;
                let w = g.tensor(d.weight.val());
                x = match &d.bias {
                    Some(b) => {
                        let b = g.tensor(b.val());
                        g.node("Gemm", &[&x, &w, &b], vec![])
                    }
                    None => g.node("MatMul", &[&x, &w], vec![]),
                };
                Some(*activation)
            }
            Layer::Conv2D { kernel_size, strides, padding, activation, .. } => {
                let c = &net.conv[ci];
                ci += 1;
                let w = g.tensor(c.weight.val());
                let mut inputs = vec![x.clone(), w];
                if let Some(b) = &c.bias {
                    inputs.push(g.tensor(b.val()));
                }
                let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                let attrs = vec![
                    attr_ints("kernel_shape", &kernel_size.map(|k| k as i64)),
                    attr_ints("strides", &strides.map(|s| s as i64)),
                    attr_ints("pads", &pads(*padding, [shape[0], shape[1]], *kernel_size, *strides)),
                ];
                x = g.node("Conv", &refs, attrs);
                Some(*activation)
            }
            Layer::MaxPooling2D { pool_size, strides, padding } | Layer::AveragePooling2D { pool_size, strides, padding } => {
                let mut attrs = vec![
                    attr_ints("kernel_shape", &pool_size.map(|k| k as i64)),
                    attr_ints("strides", &strides.map(|s| s as i64)),
                    attr_ints("pads", &pads(*padding, [shape[0], shape[1]], *pool_size, *strides)),
                ];
                let op = if matches!(l, Layer::MaxPooling2D { .. }) {
                    "MaxPool"
                } else {
                    attrs.push(attr_int("count_include_pad", 0));
                    "AveragePool"
                };
                x = g.node(op, &[&x], attrs);
                None
            }
            Layer::GlobalAveragePooling2D => {
                let p = g.node("GlobalAveragePool", &[&x], vec![]);
                x = g.node("Flatten", &[&p], vec![attr_int("axis", 1)]);
                image = false;
                None
            }
            Layer::Flatten => {
                if image {
                    x = to_flat(&mut g, &x);
                    image = false;
                }
                None
            }
            Layer::Reshape { target_shape } => {
                if image {
                    x = to_flat(&mut g, &x);
                    image = false;
                }
                if let [h, w, c] = target_shape[..] {
                    x = to_image(&mut g, &x, [h, w, c]);
                    image = true;
                }
                None
            }
            Layer::BatchNormalization { epsilon, .. } => {
                let b = &net.norm[ni];
                ni += 1;
                let (s, o, m, v) = (g.tensor(b.gamma.val()), g.tensor(b.beta.val()), g.tensor(b.running_mean.value()), g.tensor(b.running_var.value()));
                x = g.node("BatchNormalization", &[&x, &s, &o, &m, &v], vec![attr_float("epsilon", *epsilon as f32)]);
                None
            }
            Layer::Dropout { .. } => None,
            Layer::Activation { activation } => Some(*activation),
        };
        if let Some(a) = act {
            // As `Net::forward_logits`: a final softmax or sigmoid is held back, and the
            // classifier's own (below) applied instead, as tensorcdc's predict does.
            let held = Some(i) == last && matches!(a, Activation::Softmax | Activation::Sigmoid);
            if !(held && loss.is_classification()) {
                x = g.activate(a, x, image);
            }
        }
    }
    let (out_name, classes) = match loss {
        Loss::SparseCategoricalCrossentropy => ("probabilities", spec.outputs()),
        Loss::BinaryCrossentropy => ("probabilities", 1),
        _ => ("value", 1),
    };
    let y = match loss {
        Loss::SparseCategoricalCrossentropy => g.activate(Activation::Softmax, x, false),
        Loss::BinaryCrossentropy => g.activate(Activation::Sigmoid, x, false),
        _ => x,
    };
    g.nodes.push(pb::NodeProto { name: "output".into(), op_type: "Identity".into(), input: vec![y], output: vec![out_name.into()], ..Default::default() });
    let value = |name: &str, dims: Vec<Option<i64>>| pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape: Some(pb::TensorShapeProto {
                    dim: dims
                        .into_iter()
                        .map(|d| pb::tensor_shape_proto::Dimension {
                            value: Some(match d {
                                Some(n) => pb::tensor_shape_proto::dimension::Value::DimValue(n),
                                None => pb::tensor_shape_proto::dimension::Value::DimParam("batch".into()),
                            }),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok(pb::ModelProto {
        ir_version: 8,
        producer_name: "tensorcdc".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        opset_import: vec![pb::OperatorSetIdProto { domain: String::new(), version: 13 }],
        graph: Some(pb::GraphProto {
            name: "tensorcdc".into(),
            node: g.nodes,
            initializer: g.inits,
            input: vec![value("input", vec![None, Some(spec.inputs as i64)])],
            output: vec![value(out_name, vec![None, Some(classes as i64)])],
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Writes the model as an `.onnx` file at `out`.
pub fn save_onnx(spec: &SequentialSpec, loss: Loss, net: &Net, out: &Path) -> Result<(), ModelError> {
    let model = onnx_model(spec, loss, net)?;
    std::fs::write(out, model.encode_to_vec()).map_err(|e| ModelError::Checkpoint { path: out.into(), reason: e.to_string() })
}
