"""The converter keeps DA3's Gaussian head: Lyra-2's checkpoints/recon/model.pt (a torch zip, read without torch)
with the golden tiny GS weights converts to a da3.safetensors whose GS head gives bit-identical raw outputs."""
import os
import sys

import numpy as np
import pytest

import importlib

from lyra2 import _core
from lyra2.reconstruct import _Networks, reconstruct_chunk

cv = importlib.import_module("lyra2.convert")
sys.path.insert(0, os.path.dirname(__file__))
import pth_builder as pb  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "data")
OPTIONS = dict(heads=2, metric_heads=3, cam_enc_heads=2, taps=[3, 5, 7, 9], metric_taps=[1, 2, 4, 5])


def test_recon_checkpoint_converts_with_its_gs_head(tmp_path):
    weights = dict(np.load(os.path.join(DATA, "gs_tiny_weights.npz")))
    st = pb.Storages()
    sd = pb.state_dict({f"model.{k}": v for k, v in weights.items()}, st)
    (tmp_path / "checkpoints" / "recon").mkdir(parents=True)
    with open(tmp_path / "checkpoints" / "recon" / "model.pt", "wb") as f:
        f.write(pb.torch_zip_bytes({"module": sd}, st))
    out = tmp_path / "converted"
    m = cv.convert(tmp_path / "checkpoints", out, progress=False)
    info = m["files"]["da3.safetensors"]
    assert info["family"] == "da3"
    assert info["config"]["gs_head"] == {"out_dim": 38, "sh_degree": 2, "features": 16}
    path = str(out / "da3.safetensors")
    from lyra2 import io as lio

    conv = lio.load_safetensors(path)
    gs_keys = [k for k in weights if k.startswith("da3.gs_head.")]
    assert len(gs_keys) == 66 and all(k in conv for k in gs_keys)
    assert all(conv[k].dtype == np.float32 and np.array_equal(conv[k], weights[k]) for k in gs_keys)
    # the converted file runs the GS branch exactly as the arrays do
    g = dict(np.load(os.path.join(DATA, "gs_tiny.npz")))
    a = reconstruct_chunk(_Networks(path, **OPTIONS), g["frames"][:2], g["w2c"][:2], g["K"][:2])
    b = reconstruct_chunk(_Networks(weights, **OPTIONS), g["frames"][:2], g["w2c"][:2], g["K"][:2])
    np.testing.assert_array_equal(a["raw"], b["raw"])
    assert _core.gs_config(_Networks(path, **OPTIONS).gs)["sh_degree"] == 2
