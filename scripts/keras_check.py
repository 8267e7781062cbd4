"""Keras 3.15 runs a `.keras` file that `tensorcdc export` wrote (crates/cli/tests/keras_models.rs):
keras.models.load_model, then predict on the 10,000 Fashion-MNIST test images (x / 255, in the
model's own input shape). Writes OUT: accuracy and mean cross-entropy computed from the
probabilities (softmax of the outputs when they are logits, i.e. when the loaded model does not
end in a softmax), and the probabilities of the first 64 images.

usage: python keras_check.py MODEL.keras DATA_DIR OUT.json
"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(__file__))
import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras_reference import idx  # noqa: E402

model_path, data, out = sys.argv[1:4]
model = keras.models.load_model(model_path)
x = idx(os.path.join(data, "t10k-images-idx3-ubyte.gz")).astype("float32") / 255.0
y = idx(os.path.join(data, "t10k-labels-idx1-ubyte.gz")).astype("int64")
z = model.predict(x.reshape((-1,) + tuple(model.input_shape[1:])), batch_size=1000, verbose=0).astype("float64")
if model.layers[-1].get_config().get("activation") != "softmax":
    z = np.exp(z - z.max(axis=1, keepdims=True))
    z /= z.sum(axis=1, keepdims=True)
acc = float((z.argmax(axis=1) == y).mean())
loss = float(-np.log(np.maximum(z[np.arange(len(y)), y], 1e-12)).mean())
with open(out, "w") as f:
    json.dump({"accuracy": acc, "loss": loss, "probs": z[:64].tolist(), "layers": [l.__class__.__name__ for l in model.layers]}, f)
