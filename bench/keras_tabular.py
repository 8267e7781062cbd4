"""Reference for the any-table benchmark: Keras on one of scikit-learn's bundled data sets
(or vega_datasets' bundled `cars`, the auto-mpg table with a text column), with the split and
encoding tensorcdc uses: every fifth row held out; number features standardised with the
training rows' mean and population deviation; a text column one-hot over the training
vocabulary plus one slot for values never seen (Keras' own `StringLookup(num_oov_indices=1,
output_mode="one_hot")`); rows with a NULL feature or label dropped from either split.

Usage: keras_tabular.py breast_cancer|wine|diabetes|cars SEED EPOCHS LEARNING_RATE MODEL_JSON_OUT

Writes the model's own `model.to_json()` to MODEL_JSON_OUT (tensorcdc trains from it) and
prints one JSON line: {"epoch_s": [...], "test": {"accuracy"|"mse": ...}}.
"""
import json
import sys
import time

import keras
import numpy as np
from sklearn import datasets

MODELS = {
    # (hidden layers, output units, output activation, loss, metric)
    "breast_cancer": ([16], 1, "sigmoid", "binary_crossentropy", "accuracy"),
    "wine": ([32], 3, "softmax", "sparse_categorical_crossentropy", "accuracy"),
    "diabetes": ([32], 1, "linear", "mse", "mse"),
    "cars": ([32], 1, "linear", "mse", "mse"),
}

# cars: miles per gallon from these columns, `origin` (USA, Europe, Japan) as text.
CARS_NUMBERS = ["cylinders", "displacement", "horsepower", "weight_in_lbs", "acceleration", "year"]


def cars():
    """The auto-mpg table (406 rows) as (x, y, test) with tensorcdc's encoding."""
    import pandas as pd
    from vega_datasets import local_data

    d = local_data.cars()
    d.columns = [c.lower() for c in d.columns]
    d["year"] = d["year"].dt.year
    test = np.arange(len(d)) % 5 == 4
    keep = d[CARS_NUMBERS + ["origin", "miles_per_gallon"]].notna().all(axis=1).to_numpy()
    d, test = d[keep], test[keep]
    num = d[CARS_NUMBERS].to_numpy(np.float64)
    mean, std = num[~test].mean(axis=0), num[~test].std(axis=0)
    std[std == 0] = 1.0
    lookup = keras.layers.StringLookup(num_oov_indices=1, output_mode="one_hot")
    lookup.adapt(d["origin"][~test].to_numpy())
    onehot = np.asarray(lookup(d["origin"].to_numpy()), dtype=np.float32)
    x = np.concatenate([((num - mean) / std).astype(np.float32), onehot], axis=1)
    return x, d["miles_per_gallon"].to_numpy(np.float32), test


class EpochTimes(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self.t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.t)


def main():
    name, seed, epochs, lr, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
    keras.utils.set_random_seed(seed)
    if name == "cars":
        x, y, test = cars()
    else:
        d = {"breast_cancer": datasets.load_breast_cancer, "wine": datasets.load_wine, "diabetes": datasets.load_diabetes}[name]()
        x, y = d.data.astype(np.float64), d.target
        test = np.arange(len(y)) % 5 == 4
        mean, std = x[~test].mean(axis=0), x[~test].std(axis=0)
        std[std == 0] = 1.0
        x = ((x - mean) / std).astype(np.float32)
    hidden, units, act, loss, metric = MODELS[name]
    layers = [keras.Input(shape=(x.shape[1],))] + [keras.layers.Dense(h, activation="relu") for h in hidden]
    model = keras.Sequential(layers + [keras.layers.Dense(units, activation=act)])
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss, metrics=[metric])
    with open(out, "w") as f:
        f.write(model.to_json())
    times = EpochTimes()
    yt = y.astype(np.float32) if name in ("diabetes", "cars") else y
    model.fit(x[~test], yt[~test], epochs=epochs, batch_size=32, shuffle=True, verbose=0, callbacks=[times])
    res = model.evaluate(x[test], yt[test], batch_size=1024, verbose=0, return_dict=True)
    print(json.dumps({"epoch_s": times.times, "test": {metric: float(res[metric])}, "keras": keras.__version__}))


if __name__ == "__main__":
    main()
