"""Shared fixtures of the generate-mode tests (test_generate*.py): the tiny random checkpoint of lyra2.testing, a
32x48 test image and its depth. Imported into each test module, so each module gets its own (module-scoped)
checkpoint folder."""
import os

import numpy as np
import pytest

import importlib

from lyra2 import fields, testing

gen = importlib.import_module("lyra2.generate")  # the module; lyra2.generate itself is the generate() function

H, W = 32, 48


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    old = os.environ.get("LYRA2_NUM_THREADS")
    os.environ["LYRA2_NUM_THREADS"] = "1"  # 2 shared cores: one thread per network (the emulated device too)
    path = testing.make_tiny_checkpoint(str(tmp_path_factory.mktemp("tiny")), seed=0)
    yield path
    gen.release_models()  # cached (possibly placed) models of this folder
    if old is None:
        os.environ.pop("LYRA2_NUM_THREADS", None)
    else:
        os.environ["LYRA2_NUM_THREADS"] = old


@pytest.fixture(scope="module")
def image():
    y, x = np.mgrid[0:H, 0:W]
    return (np.stack([x * 5, y * 7, (x + y) * 3], -1) % 256).astype(np.uint8)


@pytest.fixture(scope="module")
def depth():
    y = np.arange(H, dtype=np.float32)[:, None]
    return np.broadcast_to(2.0 + 0.05 * y, (H, W)).astype(np.float32).copy()


def zoom_args(**kw):
    """Validated endpoint fields for a tiny run (the resolution set to the test size)."""
    args = fields.validate({"prompt": "a quiet street", "seed": 0, **kw}, require_image=False)
    args["resolution"] = (H, W)
    return args
