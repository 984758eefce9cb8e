"""Weight mappings handed to the network loaders (csrc/python/py_common.c lyra_py_named_arrays): hostile or
wrong mappings must raise a clear exception naming `weights` / the key, never crash the interpreter. Each case
runs in a subprocess so that a segfault fails the test instead of killing pytest."""
import subprocess
import sys
import textwrap

import pytest

LOADERS = {
    "UMT5Encoder": "lyra2.models.UMT5Encoder",
    "CLIPVision": "lyra2.models.CLIPVision",
    "LyraDiT": "lambda w: lyra2.models.LyraDiT(w, num_heads=4)",
    "MoGe": "lyra2.models.MoGe",
    "DepthAnything3": "lyra2.models.DepthAnything3",
    "WanVAE": "lyra2.models.WanVAE",
    "vae_load": "lambda w: lyra2._core.vae_load(w)",
}

# Each case builds `w` and names the exception type and a fragment its message must contain.
CASES = {
    # items() returning non-tuples / 1-tuples used to be read with PyTuple_GET_ITEM (segfault).
    "items_not_tuples": ("class M(dict):\n    items = lambda s: [5]\nw = M(a=np.zeros(1, np.float32))",
                         "Lyra2Error", ""),
    "items_one_tuples": ("class M(dict):\n    items = lambda s: [('a',)]\nw = M(a=np.zeros(1, np.float32))",
                         "Lyra2Error", ""),
    "non_str_key": ("w = {1: np.zeros(1, np.float32)}", "TypeError", "tensor names must be str"),
    "object_value": ("w = {'a.weight': object()}", "TypeError", "'a.weight'"),
    "ragged_value": ("w = {'a.weight': [[1.0], [1.0, 2.0]]}", "TypeError", "'a.weight' is not an array"),
    "nul_in_name": ("w = {'a\\0b': np.zeros(1, np.float32)}", "ValueError", "NUL"),
    # A value whose __array__ grows the dict being read: buffers sized before the loop used to overflow.
    "array_grows_dict": (textwrap.dedent("""\
        w = {}
        class Grow:
            def __array__(self, dtype=None, copy=None):
                for i in range(1000):
                    w[f"extra.{i}"] = np.zeros(1, np.float32)
                return np.zeros(1, np.float32)
        w["a.weight"] = Grow()"""), "Lyra2Error", ""),
    "array_clears_dict": (textwrap.dedent("""\
        w = {}
        class Clear:
            def __array__(self, dtype=None, copy=None):
                w.clear()
                return np.zeros(1, np.float32)
        w["a.weight"] = Clear()
        w["b.weight"] = np.zeros(1, np.float32)"""), "ValueError", "'b.weight' is listed by keys() but cannot"),
}


RUNNER = textwrap.dedent("""\
    import json, sys, textwrap
    import numpy as np, lyra2, lyra2.models
    load = eval(sys.argv[1])
    for setup in json.loads(sys.argv[2]):
        print("CASE", json.dumps(setup), flush=True)  # the last one printed is the culprit of a crash
        env = {"np": np}
        exec(setup, env)
        try:
            load(env["w"])
        except Exception as e:
            print(json.dumps([type(e).__name__, str(e)]), flush=True)
        else:
            print(json.dumps(["no error", ""]), flush=True)
    """)


def run_cases(loader: str, setups: list) -> list:
    """[(exception type name, message)] of each setup, loaded in one subprocess (a crash fails the test)."""
    import json
    r = subprocess.run([sys.executable, "-c", RUNNER, LOADERS[loader], json.dumps(setups)], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, f"{loader}: interpreter died with {r.returncode} after\n{r.stdout[-1500:]}{r.stderr[-1500:]}"
    return [tuple(json.loads(line)) for line in r.stdout.splitlines() if not line.startswith("CASE ")]


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_hostile_mappings_raise_cleanly(loader):
    names = sorted(CASES)
    results = run_cases(loader, [CASES[c][0] for c in names])
    for case, (name, message) in zip(names, results, strict=True):
        _, exc, fragment = CASES[case]
        if loader == "WanVAE" and case == "array_clears_dict":
            # WanVAE loads a dict() copy, so clearing the caller's dict only reports missing tensors.
            exc, fragment = "Lyra2Error", "is missing"
        assert name == exc, (case, name, message)
        assert fragment in message, (case, name, message)


@pytest.mark.parametrize("loader", ["UMT5Encoder", "CLIPVision", "LyraDiT", "MoGe", "DepthAnything3", "vae_load"])
def test_non_mapping_weights_are_a_type_error_naming_weights(loader):
    bads = ["w = []", "w = np.zeros(3)", "w = (('a', np.zeros(1)),)", "w = 42"]
    for bad, (name, message) in zip(bads, run_cases(loader, bads), strict=True):
        assert name == "TypeError", (bad, name, message)
        if loader != "vae_load":  # _core.vae_load is private and takes a dict only (WanVAE checks Mapping)
            assert "weights" in message and "safetensors path" in message and "mapping" in message, (bad, message)


def test_any_collections_mapping_is_accepted():
    """A read-only Mapping that is not a dict is read through keys() and __getitem__ (the loader then reports
    the missing tensors by name, which shows the mapping was read)."""
    setup = textwrap.dedent("""\
        from collections.abc import Mapping
        class RO(Mapping):
            def __init__(self, d): self.d = d
            def __getitem__(self, k): return self.d[k]
            def __iter__(self): return iter(self.d)
            def __len__(self): return len(self.d)
        w = RO({"token_embedding.weight": np.zeros((8, 4), np.float32)})""")
    [(name, message)] = run_cases("UMT5Encoder", [setup])
    assert name == "Lyra2Error" and "is missing" in message, (name, message)
