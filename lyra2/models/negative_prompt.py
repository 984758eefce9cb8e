"""The precomputed negative-prompt umT5 embedding used by the unconditional CFG branch (upstream Z:504-507,
CTI:227-230, PERS:146-153).

Upstream ships ``checkpoints/text_encoder/negative_prompt.pt``, a pickled dict whose key ``"t5_text_embeddings"``
holds the tensor (loaded with ``torch.load`` at ``lyra2_zoomgs_inference.py:504-507``; expected (1, 512, 4096),
bf16 on use). The converted checkpoint folder stores it as ``negative_prompt.safetensors`` with ONE required
tensor under the same name, ``t5_text_embeddings`` (F32, BF16 or F16; shape (1, 512, D), (512, D) or
(1, 1, 512, D) — the DiT squeezes a 4-D text embedding, ``wan2pt1_lyra2.py:966-967``). Other tensors in the
file are ignored.
"""
from __future__ import annotations

import os

import numpy as np

from .. import io
from .._core import Lyra2Error

__all__ = ["load_negative_prompt", "TENSOR_NAME", "TEXT_LEN"]

TENSOR_NAME = "t5_text_embeddings"
TEXT_LEN = 512


def load_negative_prompt(path, dim=None) -> np.ndarray:
    """float32 (1, 512, D) from a converted safetensors file (see the module docstring).

    ``dim``: the expected width (4096 for umT5-XXL; the DiT's text width); None accepts any.
    Raises Lyra2Error naming the file and the tensor when it is missing, has another shape or dtype, or holds
    non-finite values."""
    path = os.fspath(path)
    info = io.safetensors_info(path)["tensors"]
    if TENSOR_NAME not in info:
        found = ", ".join(sorted(info)[:8]) or "none"
        raise Lyra2Error(f"{path}: tensor '{TENSOR_NAME}' (the negative-prompt embedding) is missing; "
                         f"tensors found: {found}")
    meta = info[TENSOR_NAME]
    if meta["dtype"] not in ("F32", "BF16", "F16"):
        raise Lyra2Error(f"{path}: tensor '{TENSOR_NAME}' has dtype {meta['dtype']}, expected F32, BF16 or F16")
    shape = tuple(meta["shape"])
    lead_ok = len(shape) in (2, 3, 4) and all(s == 1 for s in shape[:-2])
    if not lead_ok or shape[-2] != TEXT_LEN or shape[-1] < 1 or (dim is not None and shape[-1] != int(dim)):
        want = f"(1, {TEXT_LEN}, {dim if dim is not None else 'D'})"
        raise Lyra2Error(f"{path}: tensor '{TENSOR_NAME}' has shape {shape}, expected {want} "
                         f"(or the same without / with one more leading 1)")
    emb = io.load_safetensors(path, [TENSOR_NAME])[TENSOR_NAME]
    emb = np.ascontiguousarray(emb, dtype=np.float32).reshape(1, TEXT_LEN, shape[-1])
    if not np.isfinite(emb).all():
        raise Lyra2Error(f"{path}: tensor '{TENSOR_NAME}' holds non-finite values")
    return emb
