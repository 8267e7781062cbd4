"""onnxruntime runs an `.onnx` file that `tensorcdc export --format onnx` wrote
(crates/cli/tests/byo_models.rs) on the 10,000 Fashion-MNIST test images (x / 255, in the
graph's input shape). Writes OUT: accuracy and mean cross-entropy of its `probabilities`
output, and the probabilities of the first 64 images.

usage: python onnx_check.py MODEL.onnx DATA_DIR OUT.json
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
from keras_reference import idx  # noqa: E402

model, data, out = sys.argv[1:4]
x = idx(os.path.join(data, "t10k-images-idx3-ubyte.gz")).astype("float32") / 255.0
y = idx(os.path.join(data, "t10k-labels-idx1-ubyte.gz")).astype("int64")
s = ort.InferenceSession(model)
i = s.get_inputs()[0]
z = s.run(["probabilities"], {i.name: x.reshape([-1] + [d for d in i.shape[1:]])})[0].astype("float64")
with open(out, "w") as f:
    json.dump({
        "accuracy": float((z.argmax(axis=1) == y).mean()),
        "loss": float(-np.log(np.maximum(z[np.arange(len(y)), y], 1e-12)).mean()),
        "probs": z[:64].tolist(),
        "input": [i.name, [str(d) for d in i.shape]],
    }, f)
