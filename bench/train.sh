#!/usr/bin/env bash
# Training benchmark: tensorcdc (burn, flex CPU backend) against Keras on the same
# Fashion-MNIST files, same model and settings (Dense 128 relu, Dense 10, Adam 0.001,
# batch 64, 5 epochs), side by side in one run. Makes bench/.venv with TensorFlow if missing.
# Usage: bench/train.sh [DATA_DIR] [EPOCHS]
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-/usr/share/datasets/fashion-mnist}"
epochs="${2:-5}"
venv=bench/.venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import tensorflow" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "tensorflow-cpu==2.16.2" "keras==3.15.1" "tensorflow-io==0.37.1"
fi
cargo build --release -q -p tensorcdc
mkdir -p bench/out
echo "== Keras ($epochs epochs)" >&2
"$venv/bin/python" bench/keras_train.py "$data" "$epochs" 2>/dev/null | tail -1 > bench/out/keras_train.json
echo "== tensorcdc ($epochs epochs)" >&2
target/release/tensorcdc train --data "$data" --epochs "$epochs" --out bench/out/model > bench/out/tensorcdc_train.txt
python3 - "$epochs" <<'PY'
import json, re, sys
k = json.load(open("bench/out/keras_train.json"))
t = open("bench/out/tensorcdc_train.txt").read()
ours_epoch = float(re.search(r"\(([0-9.]+) s/epoch\)", t).group(1))
ours_acc = float(re.search(r"test: .* accuracy: ([0-9.]+)", t).group(1))
keras_epoch = sum(k["epoch_s"]) / len(k["epoch_s"])
out = {
    "epochs": int(sys.argv[1]),
    "tensorcdc_s_per_epoch": round(ours_epoch, 3),
    "keras_s_per_epoch": round(keras_epoch, 3),
    "speedup": round(keras_epoch / ours_epoch, 2),
    "tensorcdc_test_accuracy": ours_acc,
    "keras_test_accuracy": round(k["test_accuracy"], 4),
    "accuracy_gap_points": round((ours_acc - k["test_accuracy"]) * 100, 2),
    "tensorflow": k["tensorflow"], "keras": k["keras"],
}
print(json.dumps(out))
json.dump(out, open("bench/out/train.json", "w"))
PY
