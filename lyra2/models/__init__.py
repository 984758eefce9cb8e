"""The networks of Lyra-2 on the lyra2 runtime (C CPU reference, CUDA when built).

Each class lives in its own submodule and is imported on first use, so `import lyra2.models` stays cheap."""
import importlib

_WHERE = {
    "Tokenizer": "tokenizer",
    "UMT5Encoder": "umt5",
    "CLIPVision": "clip",
    "WanVAE": "vae",
    "LyraDiT": "dit",
    "DepthAnything3": "depth",
    "MoGe": "moge",
}


def __getattr__(name):
    if name in _WHERE:
        module = importlib.import_module(f".{_WHERE[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'lyra2.models' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_WHERE))


__all__ = list(_WHERE)
