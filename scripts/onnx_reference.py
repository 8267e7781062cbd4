"""ONNX references for crates/cli/tests/onnx_models.rs, run in the ONNX venv (TensorFlow 2.16.2,
Keras 3.15.1, tf2onnx, onnxruntime, skl2onnx; scripts/install-deps.sh makes it).

For each Keras model NAME.keras in DIR (written by keras_reference.py): Keras' own ONNX export
(model.export(DIR/NAME.onnx, format="onnx"), tf2onnx underneath), then onnxruntime runs it on
the 10,000 Fashion-MNIST test images: accuracy, mean cross-entropy and the probabilities of the
first 64 images (softmax of the outputs where the model ends in logits). Also a scikit-learn
pipeline (StandardScaler and OneHotEncoder(handle_unknown="ignore") in a ColumnTransformer, then LogisticRegression) on a
small table of a number and a text column, exported by skl2onnx to DIR/pipeline.onnx (its
operators are ONNX-ML's), and onnxruntime's labels and probabilities for 64 new rows (one of
a city never seen in training). Writes DIR/onnx.json.

usage: python onnx_reference.py DATA_DIR DIR NAME [NAME ...]
"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(__file__))
import keras  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
from keras_reference import idx  # noqa: E402

data, out, names = sys.argv[1], sys.argv[2], sys.argv[3:]
x = idx(os.path.join(data, "t10k-images-idx3-ubyte.gz")).astype("float32") / 255.0
y = idx(os.path.join(data, "t10k-labels-idx1-ubyte.gz")).astype("int64")
report = {}
for name in names:
    model = keras.models.load_model(os.path.join(out, f"{name}.keras"))
    shape = tuple(model.input_shape[1:])
    model.predict(x[:1].reshape((-1,) + shape), verbose=0)
    path = os.path.join(out, f"{name}.onnx")
    model.export(path, format="onnx", verbose=False)
    s = ort.InferenceSession(path)
    z = s.run(None, {s.get_inputs()[0].name: x.reshape((-1,) + shape)})[0].astype("float64")
    if not (np.all((z >= 0) & (z <= 1)) and np.allclose(z.sum(axis=1), 1, atol=1e-4)):
        z = np.exp(z - z.max(axis=1, keepdims=True))
        z /= z.sum(axis=1, keepdims=True)
    report[name] = {
        "accuracy": float((z.argmax(axis=1) == y).mean()),
        "loss": float(-np.log(np.maximum(z[np.arange(len(y)), y], 1e-12)).mean()),
        "probs": z[:64].tolist(),
    }

from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder, StandardScaler  # noqa: E402
from skl2onnx import to_onnx  # noqa: E402
from skl2onnx.common.data_types import FloatTensorType, StringTensorType  # noqa: E402
import pandas as pd  # noqa: E402

rng = np.random.default_rng(0)
frame = pd.DataFrame({"amount": rng.normal(size=200).astype("float32"), "city": rng.choice(["Lyon", "Oslo", "Rome"], 200)})
def noisy_target(f):
    # Not separable: the probabilities are not all 0 or 1.
    return ((f["amount"] + 0.5 * (f["city"] == "Oslo") + rng.normal(size=len(f))) > 0).astype("int64")


target = noisy_target(frame)
pipe = Pipeline([("pre", ColumnTransformer([("num", StandardScaler(), ["amount"]), ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"])])), ("clf", LogisticRegression())])
pipe.fit(frame, target)
onx = to_onnx(pipe, initial_types=[("amount", FloatTensorType([None, 1])), ("city", StringTensorType([None, 1]))], options={id(pipe): {"zipmap": False}})
with open(os.path.join(out, "pipeline.onnx"), "wb") as f:
    f.write(onx.SerializeToString())
report["pipeline_ops"] = sorted({n.op_type for n in onx.graph.node})
# 64 new rows, one of them of a city never seen in training, and onnxruntime's outputs.
rows = pd.DataFrame({"amount": rng.normal(size=64).astype("float32"), "city": rng.choice(["Lyon", "Oslo", "Rome"], 64)})
rows.loc[5, "city"] = "Turin"
rows_target = noisy_target(rows)
s = ort.InferenceSession(os.path.join(out, "pipeline.onnx"))
label, probs = s.run(["label", "probabilities"], {"amount": rows[["amount"]].to_numpy(), "city": rows[["city"]].to_numpy().astype(object)})
report["pipeline"] = {
    "rows": [{"amount": float(a), "city": c, "target": int(t)} for a, c, t in zip(rows["amount"], rows["city"], rows_target)],
    "label": label.tolist(),
    "probs": probs.astype("float64").tolist(),
    "accuracy": float((label == rows_target.to_numpy()).mean()),
    "loss": float(-np.log(np.maximum(probs[np.arange(len(rows_target)), rows_target.to_numpy()], 1e-12)).mean()),
    "categories": list(pipe.named_steps["pre"].named_transformers_["cat"].categories_[0]),
}
with open(os.path.join(out, "onnx.json"), "w") as f:
    json.dump(report, f)
