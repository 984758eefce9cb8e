"""The Wan 2.1 causal 3-D VAE of Lyra-2 (upstream TOK:717-725, TOK:974-980, TOK:968-972), running on the lyra2 C
runtime.

    vae = WanVAE("vae.safetensors")             # or a dict {upstream name: ndarray}
    latents = vae.encode(video)                 # (B, 3, T, H, W) in [-1, 1] -> (B, 16, 1 + (T-1)/4, H/8, W/8)
    frames = vae.decode(latents)                # -> (B, 3, 1 + 4(L-1), 8h, 8w), never clamped

The network is causal in time and always runs as a stream (as upstream does): a stream object keeps one cache
per causal layer, so video can be pushed piece by piece with bounded memory and the result equals one pass
over the whole sequence. Encoder streams take 1 + 4k frames on their first push and 4k frames afterwards;
decoder streams take any number of latent frames (latent 0 gives 1 frame, every later latent 4).

Latent normalisation uses Lyra's bf16-rounded tables by default (constants="bf16": mean rounded to bf16,
inv_std = bf16(1/bf16(std)), wan2pt1.py:846-848), because Lyra builds its VAE wrapper in bf16 and its DiT was
trained on those latents; constants="fp32" gives the plain Wan tables.

`VAEStream` (from `WanVAE.stream()`) is what Lyra's autoregressive driver keeps per session
(lyra2_ar_inference.py:489-527, 989-1055): an encoder stream primed with the anchor frame repeated, a decoder
stream primed with the resulting history latents, then per step decode-new-latents / re-encode-new-frames
continuing both caches. `memory_plan()` walks the same C layer list without computing to give per-layer
activation bytes, caches and FLOPs for any resolution (`python -m lyra2.models.vae` prints the 480p note).

What it gives at the real width (dim 96), 81 frames at 480x832, f32 (bf16 halves every byte figure):
encode (1 + 20 pushes of 4 frames) 163.8 TFLOP, decode (21 one-latent pushes) 275.4 TFLOP; per push the
arena peaks at 2.29 GiB (two 585 MiB stream buffers + a residual block's two full-resolution temporaries),
and the persistent caches hold 2.09 GiB (encoder) / 3.52 GiB (decoder). A one-pass run over all 81 frames
would need a 46 GiB arena. On a GPU nothing needs spatial tiling of activations, but the convolutions must be
implicit-GEMM or row-tiled: an explicit im2col of one full-resolution 3x3x3 conv over a 4-frame push is
15.4 GiB. Attention scores are 149 MiB per latent frame (6240 tokens)."""
from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from .. import _core
from .._core import Lyra2Error

__all__ = ["WanVAE", "EncodeStream", "DecodeStream", "VAEStream", "memory_plan", "format_memory_plan"]

_CONSTANTS = {"bf16": 0, "fp32": 1}


def _constants_code(constants):
    if constants not in _CONSTANTS:
        raise ValueError(f"constants must be 'bf16' (Lyra's tables) or 'fp32', got {constants!r}")
    return _CONSTANTS[constants]


def latent_constants(constants="bf16"):
    """(mean, inv_std) float32 arrays of 16 entries: the per-channel latent normalisation tables."""
    return _core.vae_constants(_constants_code(constants))


class WanVAE:
    """Wan 2.1 VAE. `weights`: a safetensors path or a mapping of upstream tensor names (the
    modules of upstream TOK:306-546) to float32/float16 arrays; the width (dim, 96 for the real model) is read from the shapes.
    `constants`: latent normalisation tables, "bf16" (Lyra) or "fp32". `threads`: CPU threads (0 = all).
    `device="cuda"`: the weights are uploaded once; every stream keeps its causal caches and activations in
    device memory, and a call uploads its input frames and downloads its output once. A device out-of-memory
    raises Lyra2Error naming the stage and the bytes.
    `precision`: what weights, activations and caches are stored as on the device: "bf16" (the default there:
    upstream casts the VAE and its input to bf16, TOK:864, TOK:881, TOK:900-901; norm statistics and softmax stay
    f32 inside the kernels, docs/PRECISION.md) or "f32" (a parity mode); the CPU computes "f32" only. Host arrays
    in and out are float32 either way."""

    def __init__(self, weights, device="cpu", constants="bf16", threads=0, precision=None):
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        if precision is None:
            precision = "bf16" if device == "cuda" else "f32"
        if precision not in ("bf16", "f32"):
            raise ValueError(f"precision must be 'bf16' or 'f32', got {precision!r}")
        if precision == "bf16" and device != "cuda":
            raise ValueError("precision='bf16' needs device='cuda' (the CPU backend computes f32)")
        self.precision = precision
        self._code = _constants_code(constants)
        self.constants = constants
        self.device = device
        self.threads = int(threads)
        if isinstance(weights, (str, os.PathLike)):
            from ..io import load_safetensors
            weights = load_safetensors(weights)
        if not isinstance(weights, Mapping):
            raise TypeError("weights must be a safetensors path or a mapping {name: array}")
        self._model = _core.vae_load(dict(weights), device, precision)
        self.dim, self.z_dim = _core.vae_info(self._model)

    def encode(self, video, normalize=True, window=4):
        """(B, 3, T, H, W) float32 in [-1, 1], T = 1 + 4k, H and W multiples of 8 -> latents
        (B, 16, 1 + k, H/8, W/8), normalised with the model's tables (normalize=False: the raw encoder mean).
        Frame 0 is encoded alone, then `window` frames at a time (upstream uses 4; any multiple of 4 gives the
        same numbers, larger windows only use more memory)."""
        return self.encode_stream(normalize=normalize).push(video, window=window)

    def decode(self, latents, normalized=True, window=1):
        """Latents (B, 16, L, h, w) -> video (B, 3, 1 + 4(L-1), 8h, 8w), unclamped. `normalized=False`: the
        input is the raw encoder mean. Decodes `window` latents per step (upstream: 1)."""
        return self.decode_stream(normalized=normalized).push(latents, window=window)

    def encode_stream(self, normalize=True):
        """A fresh encoder stream (empty caches)."""
        return EncodeStream(self, normalize)

    def decode_stream(self, normalized=True):
        """A fresh decoder stream (empty caches)."""
        return DecodeStream(self, normalized)

    def stream(self):
        """A fresh autoregressive session: an encoder and a decoder stream kept side by side."""
        return VAEStream(self)

    def __repr__(self):
        return f"WanVAE(dim={self.dim}, z_dim={self.z_dim}, constants={self.constants!r}, device={self.device!r})"


class _Stream:
    _decoder = False

    def __init__(self, vae, normalized, session=None):
        self.vae = vae
        self._normalized = bool(normalized)
        self._session = session if session is not None else _core.vae_session(vae._model, self._decoder,
                                                                              vae.threads)
        self.frames_in = 0
        self.frames_out = 0

    def _push(self, x, window, what):
        x = np.asarray(x)
        if x.ndim != 5:
            raise ValueError(f"{what} must be 5-d {self._layout}, got shape {x.shape}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        n = x.shape[2]
        _core.vae_out_frames(self._session, n)  # validates the whole push before any cache moves
        if window is not None and (not isinstance(window, (int, np.integer)) or window < 1):
            raise ValueError(f"window must be a positive integer or None, got {window!r}")
        if window is not None and not self._decoder and window % 4:
            raise ValueError(f"encoder window must be a multiple of 4 frames, got {window}")
        code = self.vae._code if self._normalized else -1
        if self.vae.device == "cuda":
            # the whole call staged on the device once, chunked there: one upload and one download per call
            first_alone = not self._decoder and self.frames_in == 0 and window is not None
            out = _core.vae_push(self._session, x, code, first_alone, 0 if window is None else int(window))
            self.frames_in += n
            self.frames_out += out.shape[2]
            return out
        pieces, t = [], 0
        if not self._decoder and self.frames_in == 0 and window is not None:
            pieces.append(_core.vae_push(self._session, x[:, :, :1], code))  # the lone first frame (TOK:605-630)
            t = 1
        step = n if window is None else window
        while t < n:
            pieces.append(_core.vae_push(self._session, x[:, :, t:t + step], code))
            t += step
        out = pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=2)
        self.frames_in += n
        self.frames_out += out.shape[2]
        return out

    def stats(self):
        """FLOPs and bytes per layer of the last push to the C stream (batch element 0)."""
        return _core.vae_stats(self._session)

    def copy(self):
        """A deep copy (caches included): continue either copy independently (undo snapshots)."""
        other = type(self)(self.vae, self._normalized, session=_core.vae_copy(self._session))
        other.frames_in, other.frames_out = self.frames_in, self.frames_out
        return other


class EncodeStream(_Stream):
    """Encoder stream: push((B, 3, T, H, W)) -> latents (B, 16, T', H/8, W/8). The first push takes
    1 + 4k frames, later pushes 4k frames; the caches carry across pushes."""
    _layout = "(B, 3, T, H, W)"

    def push(self, video, window=4):
        """Encodes the next frames. `window`: frames per C call after the lone first frame (multiple of 4),
        None = everything in one call (the full-sequence path; same numbers, more memory)."""
        return self._push(video, window, "video")


class DecodeStream(_Stream):
    """Decoder stream: push((B, 16, n, h, w)) -> frames (B, 3, T', 8h, 8w), T' = 1 + 4(n-1) on the first push
    and 4n afterwards. Output is not clamped."""
    _decoder = True
    _layout = "(B, 16, L, h, w)"

    def push(self, latents, window=1):
        """Decodes the next latents, `window` latents per C call (None = all at once)."""
        return self._push(latents, window, "latents")


class VAEStream:
    """The VAE state of one Lyra-2 autoregressive session (lyra2_ar_inference.py): a persistent encoder and
    decoder stream.

        s = vae.stream()
        history = s.prime(anchor, n_latents=25)   # anchor repeated 97 times, encoded; decoder primed
        frames = s.decode(new_latents)            # 20 latents -> 80 frames, continuing the decoder cache
        latents = s.encode(frames)                # 80 frames -> 20 latents, continuing the encoder cache
    """

    def __init__(self, vae, encoder=None, decoder=None):
        self.vae = vae
        self.encoder = encoder if encoder is not None else vae.encode_stream()
        self.decoder = decoder if decoder is not None else vae.decode_stream()

    def prime(self, anchor, n_latents, return_frames=False):
        """Encoder priming: the anchor frame (B, 3, H, W) or (B, 3, 1, H, W) repeated (n_latents-1)·4+1 times
        is stream-encoded from empty caches (frame 0 alone, then 4-frame windows) -> history latents
        (B, 16, n_latents, H/8, W/8). Decoder priming: those latents are stream-decoded one at a time from an
        empty cache; upstream discards the pixels (return_frames=True returns them too)."""
        if self.encoder.frames_in or self.decoder.frames_in:
            raise ValueError("prime() needs a fresh stream (vae.stream())")
        if not isinstance(n_latents, (int, np.integer)) or n_latents < 1:
            raise ValueError(f"n_latents must be a positive integer, got {n_latents!r}")
        a = np.asarray(anchor, dtype=np.float32)
        if a.ndim == 4:
            a = a[:, :, None]
        if a.ndim != 5 or a.shape[2] != 1:
            raise ValueError(f"anchor must be (B, 3, H, W) or (B, 3, 1, H, W), got shape {np.shape(anchor)}")
        if self.vae.device == "cuda":
            # one call: the repeated anchor staged on the device once (same pushes: frame 0, then 4-frame windows)
            history = self.encoder.push(np.repeat(a, 1 + 4 * (n_latents - 1), axis=2))
        else:
            parts = [self.encoder.push(a)]
            group = np.ascontiguousarray(np.broadcast_to(a, a.shape[:2] + (4,) + a.shape[3:]))
            for _ in range(n_latents - 1):
                parts.append(self.encoder.push(group))
            history = np.concatenate(parts, axis=2)
        frames = self.decoder.push(history, window=1)
        return (history, frames) if return_frames else history

    def decode(self, latents):
        """New (normalised) latents -> frames, one latent at a time, continuing the decoder cache."""
        return self.decoder.push(latents, window=1)

    def encode(self, frames):
        """New frames (a multiple of 4) -> normalised latents, 4-frame windows, continuing the encoder cache."""
        return self.encoder.push(frames, window=4)

    def copy(self):
        """Deep copy of both caches (the GUI's one-step undo snapshot)."""
        return VAEStream(self.vae, self.encoder.copy(), self.decoder.copy())


# ---------------------------------------------------------------------------------------------------------
# Memory / FLOP plan: dry runs of the C layer list (no weights, nothing computed).

def _plan_pushes(dim, z_dim, decoder, shapes, precision="f32"):
    """Dry-pushes each (B, C, T, H, W) shape through a fresh plan stream; returns the per-push stats."""
    session = _core.vae_plan_session(dim, z_dim, decoder, precision)
    out = []
    for shape in shapes:
        _core.vae_plan_push(session, tuple(int(v) for v in shape))
        out.append(_core.vae_stats(session))
    return out


def _summarise(pushes):
    """Per layer: the largest push's shapes and bytes, FLOPs summed over pushes; totals."""
    layers = []
    for i, first in enumerate(pushes[0]["layers"]):
        rows = [p["layers"][i] for p in pushes]
        big = max(rows, key=lambda r: r["out_bytes"])
        layers.append({
            "name": first["name"], "kind": first["kind"], "in": big["in"], "out": big["out"],
            "out_bytes": big["out_bytes"], "temp_bytes": max(r["temp_bytes"] for r in rows),
            "cache_bytes": max(r["cache_bytes"] for r in rows),
            "im2col_bytes": max(r["im2col_bytes"] for r in rows),
            "score_bytes": max(r["score_bytes"] for r in rows),
            "flops": sum(r["flops"] for r in rows),
        })
    return {
        "pushes": len(pushes),
        "layers": layers,
        "flops": sum(l["flops"] for l in layers),
        "arena_peak": max(p["arena_peak"] for p in pushes),
        "stream_bytes": max(p["stream_bytes"] for p in pushes),
        "cache_bytes": max(p["cache_bytes"] for p in pushes),
        "largest_layer_im2col": max(l["im2col_bytes"] for l in layers),
        "largest_score_matrix": max(l["score_bytes"] for l in layers),
    }


def memory_plan(dim=96, z_dim=16, height=480, width=832, frames=81, batch=1, precision="f32"):
    """Dry-run accounting (activations and caches stored as `precision`, "f32" as on the CPU or "bf16" as on a
    device; one batch element per pass) of the C layer list for one `frames`-frame chunk at height×width:
      "encode_stream":  frame 0, then 4-frame pushes (how Lyra encodes);
      "encode_full":    all frames in one push (the full-sequence path);
      "decode_stream":  1 + (frames-1)/4 latents, one per push (how Lyra decodes);
      "decode_full":    all latents in one push.
    Each entry: per-layer in/out (C, T, H, W) of its largest push, output/temporary/cache/im2col/score bytes,
    FLOPs summed over the pushes, the arena peak and the cache total."""
    if (frames - 1) % 4 or frames < 1 or height % 8 or width % 8:
        raise ValueError("frames must be 1 + 4k and height/width multiples of 8")
    k = (frames - 1) // 4
    h, w = height // 8, width // 8
    enc = [(batch, 3, 1, height, width)] + [(batch, 3, 4, height, width)] * k
    dec = [(batch, z_dim, 1, h, w)] * (k + 1)
    plan = {
        "config": {"dim": dim, "z_dim": z_dim, "height": height, "width": width, "frames": frames, "batch": batch,
                   "precision": precision},
        "encode_stream": _summarise(_plan_pushes(dim, z_dim, False, enc, precision)),
        "encode_full": _summarise(_plan_pushes(dim, z_dim, False, [(batch, 3, frames, height, width)], precision)),
        "decode_stream": _summarise(_plan_pushes(dim, z_dim, True, dec, precision)),
        "decode_full": _summarise(_plan_pushes(dim, z_dim, True, [(batch, z_dim, k + 1, h, w)], precision)),
    }
    return plan


def _mb(b):
    return f"{b / 2**20:,.1f}"


def format_memory_plan(plan):
    """A readable table of memory_plan()'s result (MiB, GFLOP)."""
    c = plan["config"]
    lines = [f"Wan VAE plan: dim {c['dim']}, {c['frames']} frames at {c['height']}x{c['width']}, "
             f"batch {c['batch']}, {c['precision']} storage"]
    for key in ("encode_stream", "decode_stream"):
        p = plan[key]
        lines.append("")
        lines.append(f"{key}: {p['pushes']} pushes, {p['flops'] / 1e12:.2f} TFLOP, arena peak {_mb(p['arena_peak'])} "
                     f"MiB (two stream buffers {_mb(p['stream_bytes'])}), caches {_mb(p['cache_bytes'])} MiB")
        lines.append(f"  {'layer':26s} {'kind':12s} {'out (C,T,H,W)':22s} {'out MiB':>9s} {'temp MiB':>9s} "
                     f"{'cache MiB':>9s} {'im2col MiB':>10s} {'GFLOP':>9s}")
        for l in p["layers"]:
            lines.append(f"  {l['name']:26s} {l['kind']:12s} {str(l['out']):22s} {_mb(l['out_bytes']):>9s} "
                         f"{_mb(l['temp_bytes']):>9s} {_mb(l['cache_bytes']):>9s} {_mb(l['im2col_bytes']):>10s} "
                         f"{l['flops'] / 1e9:9.1f}")
        full = plan[key.replace("stream", "full")]
        lines.append(f"  one-pass alternative ({key.replace('stream', 'full')}): arena peak {_mb(full['arena_peak'])} MiB, "
                     f"largest explicit im2col {_mb(full['largest_layer_im2col'])} MiB, "
                     f"attention scores {_mb(full['largest_score_matrix'])} MiB")
        lines.append(f"  streaming: largest explicit im2col {_mb(p['largest_layer_im2col'])} MiB, attention scores "
                     f"{_mb(p['largest_score_matrix'])} MiB per push")
    return "\n".join(lines)


if __name__ == "__main__":
    print(format_memory_plan(memory_plan()))
