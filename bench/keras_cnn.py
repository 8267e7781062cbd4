"""The CNN of issue 23 in Keras 3.15 (the reference of bench/cnn.sh): Conv2D(32, 3x3, relu) ->
MaxPooling2D -> Conv2D(64, 3x3, relu) -> MaxPooling2D -> Flatten -> Dense(10) logits, Adam,
batch 64, on the 60,000 Fashion-MNIST training images (x / 255), tested on the 10,000.
Writes the model's to_json() to JSON_OUT (tensorcdc trains the same with --model-spec) and
prints one JSON line: seconds per epoch (each epoch timed, the first including tracing, as
Keras reports it) and test accuracy.

usage: python keras_cnn.py EPOCHS SEED JSON_OUT
"""
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
import keras  # noqa: E402
from keras_reference import idx  # noqa: E402

D = "/usr/share/datasets/fashion-mnist"
epochs, seed, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
x = idx(D + "/train-images-idx3-ubyte.gz").astype("float32")[..., None] / 255
y = idx(D + "/train-labels-idx1-ubyte.gz").astype("int64")
xt = idx(D + "/t10k-images-idx3-ubyte.gz").astype("float32")[..., None] / 255
yt = idx(D + "/t10k-labels-idx1-ubyte.gz").astype("int64")
keras.utils.set_random_seed(seed)
L = keras.layers
m = keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(32, (3, 3), activation="relu"), L.MaxPooling2D((2, 2)),
                      L.Conv2D(64, (3, 3), activation="relu"), L.MaxPooling2D((2, 2)), L.Flatten(), L.Dense(10)])
with open(out, "w") as f:
    f.write(m.to_json())
m.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
times = []
for _ in range(epochs):
    t = time.time()
    m.fit(x, y, epochs=1, batch_size=64, verbose=0)
    times.append(time.time() - t)
_, acc = m.evaluate(xt, yt, batch_size=1000, verbose=0)
print(json.dumps({"who": "keras", "epochs": epochs, "seed": seed, "s_per_epoch": sum(times) / epochs, "test_accuracy": acc}))
