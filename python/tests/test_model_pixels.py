"""A checkpoint of the blog's MNIST network (written by `tensorcdc train`) predicts a row whose
`pixels` are bytes, a list of 784 ints 0-255 or a numpy array, all alike."""
import gzip
import subprocess

import numpy as np
import pytest

import tensorcdc
from conftest import FASHION, tensorcdc_bin


@pytest.fixture(scope="module")
def mnist_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("mnist") / "model"
    subprocess.run([tensorcdc_bin(), "train", "--data", FASHION, "--limit", "2000", "--epochs", "1", "--out", str(out)],
                   check=True, capture_output=True)
    return tensorcdc.load_model(out)


def first_test_image():
    with gzip.open(f"{FASHION}/t10k-images-idx3-ubyte.gz", "rb") as f:
        return np.frombuffer(f.read(), np.uint8, offset=16)[:784]


def test_predict_takes_pixels_as_bytes_a_list_or_an_array(mnist_model):
    px = first_test_image()
    [a] = mnist_model.predict([{"pixels": px.tobytes()}])
    [b] = mnist_model.predict([{"pixels": [int(v) for v in px]}])
    [c] = mnist_model.predict([{"pixels": px}])
    assert a["prediction"] in mnist_model.classes
    assert a == b == c, (a, b, c)
    # encode() sees the same features for each form.
    np.testing.assert_array_equal(mnist_model.encode([{"pixels": px.tobytes()}]), mnist_model.encode([{"pixels": px.tolist()}]))


def test_pixels_that_are_not_784_ints_0_to_255_fail_naming_the_column(mnist_model):
    with pytest.raises(tensorcdc.TensorcdcError, match=r'row 0: column "pixels": expected 784 bytes or a list of 784 ints 0-255, got a list of 3'):
        mnist_model.predict([{"pixels": [1, 2, 3]}])
    with pytest.raises(tensorcdc.TensorcdcError, match=r"got 256 at index 5"):
        mnist_model.predict([{"pixels": [0] * 5 + [256] + [0] * 778}])
    with pytest.raises(tensorcdc.TensorcdcError, match=r"got 0.5 at index 0"):
        mnist_model.predict([{"pixels": [0.5] + [0] * 783}])
