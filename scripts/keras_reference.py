"""Keras 3.15's own models and predictions, the reference of crates/cli/tests/keras_models.rs.

Trains, on Fashion-MNIST (Debian's dataset-fashion-mnist; the first TRAIN images, to keep CI
short), with Keras' defaults (Adam, batch 64):
  mlp:    the blog's network, Flatten(28x28) -> Dense(128, relu) -> Dense(10) logits;
  cnn:    Conv2D(32, 3x3, relu) -> MaxPooling2D -> Conv2D(64, 3x3, relu) -> MaxPooling2D ->
          Flatten -> Dense(10) logits, on 28x28x1 images;
  layers: the other layers tensorcdc reads: Reshape(784 -> 28x28x1), Conv2D with strides 2 and
          padding "same", BatchNormalization, AveragePooling2D "same", GlobalAveragePooling2D,
          Dropout, Dense(10, softmax).
Saves each with model.save(OUT/<name>.keras) and model.to_json() in OUT/<name>.json, the mlp also as model.to_json() in
OUT/mlp_json.json beside model.save_weights(OUT/mlp_json.weights.h5), and writes OUT/keras.json:
for each model Keras' accuracy and loss on the 10,000 test images (model.evaluate) and its class
probabilities for the first PROBS test images (softmax of the logits where the model ends in
logits).

usage: python keras_reference.py DATA_DIR OUT_DIR [TRAIN] [EPOCHS]
"""

import gzip
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

PROBS = 64


def idx(path):
    with gzip.open(path) as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def main():
    data, out = sys.argv[1], sys.argv[2]
    train = int(sys.argv[3]) if len(sys.argv) > 3 else 6000
    epochs = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    x_train = idx(os.path.join(data, "train-images-idx3-ubyte.gz"))[:train].astype("float32") / 255.0
    y_train = idx(os.path.join(data, "train-labels-idx1-ubyte.gz"))[:train].astype("int64")
    x_test = idx(os.path.join(data, "t10k-images-idx3-ubyte.gz")).astype("float32") / 255.0
    y_test = idx(os.path.join(data, "t10k-labels-idx1-ubyte.gz")).astype("int64")
    keras.utils.set_random_seed(7)
    L = keras.layers
    models = {
        "mlp": (keras.Sequential([keras.Input((28, 28)), L.Flatten(), L.Dense(128, activation="relu"), L.Dense(10)]), True, (28, 28)),
        "cnn": (
            keras.Sequential([
                keras.Input((28, 28, 1)),
                L.Conv2D(32, (3, 3), activation="relu"),
                L.MaxPooling2D((2, 2)),
                L.Conv2D(64, (3, 3), activation="relu"),
                L.MaxPooling2D((2, 2)),
                L.Flatten(),
                L.Dense(10),
            ]),
            True,
            (28, 28, 1),
        ),
        "layers": (
            keras.Sequential([
                keras.Input((784,)),
                L.Reshape((28, 28, 1)),
                L.Conv2D(8, 3, strides=2, padding="same", activation="relu"),
                L.BatchNormalization(),
                L.AveragePooling2D(2, padding="same"),
                L.Conv2D(16, 3, padding="same", activation="tanh"),
                L.GlobalAveragePooling2D(),
                L.Dropout(0.2),
                L.Dense(10, activation="softmax"),
            ]),
            False,
            (784,),
        ),
    }
    report = {}
    for name, (model, logits, shape) in models.items():
        model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=logits), metrics=["accuracy"])
        model.fit(x_train.reshape((-1,) + shape), y_train, epochs=epochs, batch_size=64, verbose=0)
        loss, acc = model.evaluate(x_test.reshape((-1,) + shape), y_test, batch_size=1000, verbose=0)
        z = model.predict(x_test[:PROBS].reshape((-1,) + shape), verbose=0).astype("float64")
        if logits:
            z = np.exp(z - z.max(axis=1, keepdims=True))
            z /= z.sum(axis=1, keepdims=True)
        report[name] = {"accuracy": float(acc), "loss": float(loss), "probs": z.tolist()}
        model.save(os.path.join(out, f"{name}.keras"))
        with open(os.path.join(out, f"{name}.json"), "w") as f:
            f.write(model.to_json())
        print(f"{name}: test accuracy {acc:.4f}, loss {loss:.4f}")
    mlp = models["mlp"][0]
    with open(os.path.join(out, "mlp_json.json"), "w") as f:
        f.write(mlp.to_json())
    mlp.save_weights(os.path.join(out, "mlp_json.weights.h5"))
    report["mlp_json"] = report["mlp"]
    with open(os.path.join(out, "keras.json"), "w") as f:
        json.dump(report, f)


if __name__ == "__main__":
    main()
