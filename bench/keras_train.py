"""Reference: the blog's Keras model on the same IDX files, timed per epoch.

Usage: keras_train.py DATA_DIR [EPOCHS] [SEED]

Prints one JSON line: {"epoch_s": [...], "test_accuracy": ..., "test_loss": ...}.
"""
import gzip, json, os, sys, time

import numpy as np
import tensorflow as tf


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    if magic == 2051:
        n, r, c = (int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(3))
        return np.frombuffer(data, np.uint8, offset=16).reshape(n, r * c)
    n = int.from_bytes(data[4:8], "big")
    return np.frombuffer(data, np.uint8, offset=8)


def main():
    d, epochs = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 5
    if len(sys.argv) > 3:
        tf.keras.utils.set_random_seed(int(sys.argv[3]))
    x_train = idx(os.path.join(d, "train-images-idx3-ubyte.gz")) / 255.0
    y_train = idx(os.path.join(d, "train-labels-idx1-ubyte.gz"))
    x_test = idx(os.path.join(d, "t10k-images-idx3-ubyte.gz")) / 255.0
    y_test = idx(os.path.join(d, "t10k-labels-idx1-ubyte.gz"))
    model = tf.keras.Sequential([
        tf.keras.Input(shape=(784,)),
        tf.keras.layers.Dense(128, activation="relu"),
        tf.keras.layers.Dense(10),
    ])
    model.compile(optimizer=tf.keras.optimizers.Adam(0.001),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])

    class Timer(tf.keras.callbacks.Callback):
        def __init__(self):
            self.times = []
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()
        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.t)

    timer = Timer()
    model.fit(x_train, y_train, batch_size=64, epochs=epochs, callbacks=[timer], verbose=2)
    loss, acc = model.evaluate(x_test, y_test, verbose=0)
    print(json.dumps({"epoch_s": timer.times, "test_accuracy": acc, "test_loss": loss,
                      "tensorflow": tf.__version__, "keras": tf.keras.__version__ if hasattr(tf.keras, "__version__") else "?"}))


if __name__ == "__main__":
    main()
