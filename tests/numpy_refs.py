"""NumPy references and error measures shared by the network and op tests (float64 throughout)."""
import numpy as np


def rel(a, b, floor=1e-6):
    """Largest |a - b| / max(|b|, floor), elementwise."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float((np.abs(a - b) / np.maximum(np.abs(b), floor)).max())


def absd(a, b):
    """Largest |a - b|."""
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def attention_ref(q, k, v, scale, bias=None, mask=None):
    """softmax(q·kᵀ·scale + bias, keys where mask != 0)·v for q (B, L, H, D), k and v (B, M, Hk, D) with H a
    multiple of Hk (grouped heads); a row with every key masked gives 0."""
    q, k, v = (np.asarray(t, np.float64) for t in (q, k, v))
    H, Hk = q.shape[2], k.shape[2]
    k = np.repeat(k, H // Hk, axis=2)
    v = np.repeat(v, H // Hk, axis=2)
    s = np.einsum("blhd,bmhd->bhlm", q, k) * scale
    if bias is not None:
        s = s + bias
    if mask is not None:
        s = np.where(mask[:, None, None, :] != 0, s, -np.inf)
    mx = s.max(-1, keepdims=True)
    p = np.exp(s - np.where(np.isfinite(mx), mx, 0))
    den = p.sum(-1, keepdims=True)
    p = np.where(den > 0, p / np.where(den > 0, den, 1), 0)
    return np.einsum("bhlm,bmhd->blhd", p, v)
