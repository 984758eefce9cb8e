"""Writes the small seed inputs of the weights fuzz targets (tests/fuzz/seeds_{safetensors,unpickle}).

Run from the repository root: python tests/fuzz/make_seeds.py. Seeds are hand-made (no torch needed),
each well under the 4096-byte max_len the fuzz runs use."""
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import pth_builder as pb  # noqa: E402
from lyra2 import io as lio  # noqa: E402


def write(folder, name, data):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def main():
    st_dir = os.path.join(ROOT, "tests/fuzz/seeds_safetensors")
    with tempfile.TemporaryDirectory() as tmp:
        p = os.path.join(tmp, "a.safetensors")
        lio.save_safetensors({"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(3, np.float16),
                              "i": np.arange(2, dtype=np.int64)}, p, metadata={"format": "pt"})
        write(st_dir, "mixed.safetensors", open(p, "rb").read())
        lio.save_safetensors({"x": np.linspace(-2, 2, 8, dtype=np.float32).reshape(2, 2, 2)}, p, dtype="bf16")
        write(st_dir, "bf16.safetensors", open(p, "rb").read())
        lio.save_safetensors({}, p)
        write(st_dir, "empty.safetensors", open(p, "rb").read())
        lio.save_safetensors({"s": np.float32(1.5), "z": np.zeros((0, 3), np.float32), "t": np.array([True])}, p)
        write(st_dir, "scalar_zero.safetensors", open(p, "rb").read())

    pk_dir = os.path.join(ROOT, "tests/fuzz/seeds_unpickle")
    st = pb.Storages()
    sd = pb.state_dict({"a.weight": np.zeros((2, 3), np.float32), "b": ("bf16", np.zeros(4, np.uint16))}, st)
    write(pk_dir, "state_dict.pkl", pb.dumps(sd))
    st = pb.Storages()
    view = pb.tensor(st, view=(np.zeros(24, np.float32), 2, (3, 4), (1, 5)))
    param = pb.Reduce(pb.Global("torch._utils", "_rebuild_parameter"), (view, True, pb.ODict([])))
    write(pk_dir, "view_param.pkl", pb.dumps({"module": {"model.w": param}, "cfg": [1, 2.5, "x", None, True],
                                              "raw": b"\x00\xff"}))
    with tempfile.TemporaryDirectory() as tmp:
        pb.dcp_folder(tmp, {"net.w": ("bfloat16", np.zeros((3, 2), np.uint16), 2)}, files=1)
        write(pk_dir, "dcp_metadata.pkl", open(os.path.join(tmp, ".metadata"), "rb").read())
    write(pk_dir, "refused_global.pkl", b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.")


if __name__ == "__main__":
    main()
