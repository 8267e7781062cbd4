#!/usr/bin/env bash
# Runs examples/notebook.ipynb as Jupyter does (jupyter nbconvert --execute), from examples/,
# with its own noida-db broker, Postgres and tensorcdc capture (KAFKA and POSTGRES unset) on
# part of Fashion-MNIST (ROWS training rows, TEST_ROWS test rows), then checks what it did:
# the figures it drew are PNGs that exist and are not blank, titled with class names that are
# the predictions it printed; mnistcg2 re-read the whole test topic; Keras warned of nothing.
#
# Needs scripts/install-deps.sh (the venv with TensorFlow, matplotlib, nbconvert), the Python
# package installed in that venv (pip install ./python) and the tensorcdc binary: the notebook
# finds it as $TENSORCDC_BIN, $CARGO_TARGET_DIR/release/tensorcdc or target/release/tensorcdc.
# The executed notebook and its figures are left in $OUT (default: a new temporary folder).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYVENV=${PYVENV:-/var/tmp/tensorcdc-tools/pyvenv}
export ROWS=${ROWS:-6000} TEST_ROWS=${TEST_ROWS:-1000}
export OUT=${OUT:-$(mktemp -d /tmp/tensorcdc-notebook-test.XXXXXX)}
mkdir -p "$OUT"
for m in tensorflow matplotlib nbconvert ipykernel tensorcdc; do
  "$PYVENV/bin/python" -c "import $m" 2>/dev/null || { echo "notebook-test: $PYVENV lacks $m: run scripts/install-deps.sh and $PYVENV/bin/pip install ./python" >&2; exit 1; }
done
"$PYVENV/bin/python" "$ROOT/examples/make_notebook.py" --check

# From examples/, as a user who opened the notebook there; the venv's kernel (python3).
cd "$ROOT/examples"
echo "notebook-test: running notebook.ipynb (ROWS=$ROWS TEST_ROWS=$TEST_ROWS), output in $OUT"
start=$(date +%s)
status=0
env -u KAFKA -u POSTGRES PATH="$PYVENV/bin:$PATH" timeout 1200 "$PYVENV/bin/jupyter" nbconvert --to notebook --execute notebook.ipynb \
  --ExecutePreprocessor.kernel_name=python3 --ExecutePreprocessor.timeout=900 \
  --output-dir "$OUT" --output notebook.out.ipynb >"$OUT/nbconvert.log" 2>&1 || status=$?
echo "notebook-test: nbconvert exited $status after $(( $(date +%s) - start )) s"
if [ "$status" -ne 0 ]; then
  tail -60 "$OUT/nbconvert.log" >&2
  exit 1
fi

"$PYVENV/bin/python" - "$OUT" <<'EOF'
import json, re, sys
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np

out = Path(sys.argv[1])
nb = json.loads((out / "notebook.out.ipynb").read_text())
streams = {"stdout": "", "stderr": ""}
for cell in nb["cells"]:
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream":
            streams[o["name"]] += "".join(o["text"])
        elif o.get("output_type") == "error":
            sys.exit(f"notebook-test: a cell failed: {o['ename']}: {o['evalue']}")
text = streams["stdout"] + streams["stderr"]
problems = []

# Figures: each PNG exists and is not blank; its titles are class names, the predictions printed.
meta = json.loads((out / "figures.json").read_text())
classes = meta["classes"]
figs = {f["file"]: f["titles"] for f in meta["figures"]}
rows = re.findall(r"^tf\.public\.mnist_manual/\d+@\d+: predicted (.+), true (.+)$", streams["stdout"], re.M)
predicted = [p for p, _ in rows]
if len(rows) != 5:
    problems.append(f"expected 5 predicted rows of mnist_manual, the notebook printed {len(rows)}")
for name, want in (("prediction.png", predicted[:1]), ("predictions-2x2.png", predicted[:4])):
    png = out / name
    if name not in figs or not png.is_file():
        problems.append(f"{name}: not drawn (figures.json has {sorted(figs)})")
        continue
    img = mpimg.imread(png)
    if img.ndim < 2 or min(img.shape[:2]) < 100 or float(np.std(img)) == 0:
        problems.append(f"{name}: blank or tiny ({img.shape}, std {float(np.std(img))})")
    titles = figs[name]
    for t in titles:
        if t not in classes:
            problems.append(f"{name}: title {t!r} is not a class name")
    if titles != want:
        problems.append(f"{name}: titles {titles} are not the predictions printed for its rows {want}")
    if f"{name}: predicted {' | '.join(titles)}" not in streams["stdout"]:
        problems.append(f"{name}: the notebook did not print its predictions")
    print(f"notebook-test: {name}: {img.shape[1]}x{img.shape[0]}, pixel std {float(np.std(img)):.3f}, titles {titles}")

# mnistcg2 re-read the whole test topic.
m = re.search(r"group mnistcg2 read (\d+) of the (\d+) records in tf\.public\.mnist_test", text)
if not m or m.group(1) != m.group(2) or int(m.group(1)) == 0:
    problems.append(f"mnistcg2 did not re-read the whole test topic: {m.group(0) if m else 'no line says what it read'}")
else:
    print(f"notebook-test: {m.group(0)}")

# No warnings from Keras (nor TensorFlow's end-of-input lines) in fit and evaluate.
for bad in ("ran out of data", "OUT_OF_RANGE", "End of sequence", "UserWarning", "Traceback"):
    for line in text.splitlines():
        if bad in line:
            problems.append(f"the notebook printed {line.strip()!r}")
# The Rust readers' stderr lines reach the notebook (a group says when it is assigned partitions).
if "group assigned partitions of tf.public.mnist_test" not in text:
    problems.append("the consumer group's stderr line (group assigned partitions of ...) is not in the notebook's output")

if problems:
    sys.exit("notebook-test: FAILED\n  " + "\n  ".join(problems))
print("notebook-test: ok")
EOF
