"""lyra2's CPU backend against PyTorch's CPU path on the same networks, weights and inputs (issue 19).

For each case the network is built twice: by lyra2 (the C engine) and here in plain PyTorch, written from the
networks' definitions (the float64 NumPy references of tests/test_umt5.py, test_clip.py and test_vae.py,
ported to torch; the DiT from its definition in benchmarks/torch_dit.py), with the same random weights. The outputs
are compared (max abs error relative to max |torch output|; parity bound 1e-4), then both sides are timed
interleaved (lyra2, torch, lyra2, torch, ...) after a warm-up, each on the same thread count, and the median ratio
torch_time / lyra2_time is printed (> 1: lyra2 is faster).

    python benchmarks/cpu_vs_torch.py [--threads 2] [--repeat 5] [--only dit,attention,umt5,clip,vae] [--small]
                                      [--vae-size 5x128x224]

Cases (issue 19): the Lyra-2 DiT at dim 512 (4 heads × 128, 2 blocks) and one block at dim 1024 (8 × 128), FFN
3·dim, real text/CLIP/camera/buffer widths, the released FramePack layout on a 30 × 52 latent (9,602 tokens);
umT5 encoder dim 1024, 4 layers, 512 tokens; CLIP vision tower width 1280, 4 blocks run, 224 px; Wan VAE real
channels (96, z 16) encode 5 frames 128×224 + decode; self-attention of the DiT sizes alone (9,602 tokens,
4 heads × 128 and 8 × 128). `--small` shrinks every case (for a quick check on a busy machine).

One process holds both engines: torch is imported first and its bundled libgomp.so.1 is the one lyra2's extension
binds to (same soname), so both run with torch's default OpenMP wait policy (lyra2 alone runs PASSIVE, see
lyra2/_omp_env.py).

Needs torch (an optional reference, never a runtime dependency): exits 0 with a message without it.
"""
import argparse
import math
import os
import statistics
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # this checkout's build
sys.path.insert(1, os.path.join(ROOT, "benchmarks"))  # torch_dit

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # optional reference
    torch = None

PARITY = 1e-4  # max |lyra − torch| / max |torch|


# ---------------------------------------------------------------- timing

def interleaved(fns, repeat):
    """Median wall time of each callable, run alternately after one warm-up each."""
    for f in fns.values():
        f()
    times = {n: [] for n in fns}
    for _ in range(repeat):
        for n, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[n].append(time.perf_counter() - t0)
    return {n: statistics.median(t) for n, t in times.items()}


def report(name, flop, lyra_out, torch_out, t):
    ref = np.asarray(torch_out, dtype=np.float64)
    err = float(np.abs(np.asarray(lyra_out, dtype=np.float64) - ref).max()) / max(float(np.abs(ref).max()), 1e-30)
    ok = "ok" if err <= PARITY else "PARITY FAIL"
    tl, tt = t["lyra2"], t["torch"]
    print(f"{name:<44} rel err {err:8.1e} {ok:<4} | lyra2 {tl:8.3f} s ({flop / tl / 1e9:6.1f} GFLOP/s) | "
          f"torch {tt:8.3f} s ({flop / tt / 1e9:6.1f}) | torch/lyra2 {tt / tl:5.2f}x", flush=True)
    return err <= PARITY


def rnd(rng, *shape, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(np.float32)


# ---------------------------------------------------------------- umT5 (Wan 2.1 T5Encoder, lyra2/models/umt5.py)

def umt5_weights(rng, vocab, dim, heads, ffn, layers, buckets):
    w = {"token_embedding.weight": rnd(rng, vocab, dim), "norm.weight": 1 + rnd(rng, dim, scale=0.1)}
    for i in range(layers):
        p = f"blocks.{i}."
        w[p + "norm1.weight"] = 1 + rnd(rng, dim, scale=0.1)
        w[p + "norm2.weight"] = 1 + rnd(rng, dim, scale=0.1)
        w[p + "attn.q.weight"] = rnd(rng, dim, dim, scale=1 / dim)
        for n in "kvo":
            w[p + f"attn.{n}.weight"] = rnd(rng, dim, dim, scale=1 / math.sqrt(dim))
        w[p + "ffn.gate.0.weight"] = rnd(rng, ffn, dim, scale=1 / math.sqrt(dim))
        w[p + "ffn.fc1.weight"] = rnd(rng, ffn, dim, scale=1 / math.sqrt(dim))
        w[p + "ffn.fc2.weight"] = rnd(rng, dim, ffn, scale=1 / math.sqrt(ffn))
        w[p + "pos_embedding.embedding.weight"] = rnd(rng, buckets, heads, scale=0.5)
    return w


def t5_bucket(L, num_buckets=32, max_dist=128):
    """Bidirectional relative-position bucket of key − query (T5RelativeEmbedding)."""
    rel = torch.arange(L)[None, :] - torch.arange(L)[:, None]
    half = num_buckets // 2
    exact = half // 2
    out = (rel > 0).long() * half
    n = rel.abs()
    large = exact + (torch.log(n.float() / exact) / math.log(max_dist / exact) * (half - exact)).long()
    return out + torch.where(n < exact, n, large.clamp(max=half - 1))


class TorchUMT5:
    def __init__(self, w, heads):
        self.w = {k: torch.from_numpy(v) for k, v in w.items()}
        self.heads = heads
        self.layers = len([k for k in w if k.endswith(".norm1.weight")])

    @staticmethod
    def rms(x, g):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * g

    def __call__(self, ids):
        g, H = self.w, self.heads
        B, L = ids.shape
        x = g["token_embedding.weight"][ids]
        bucket = t5_bucket(L)
        for i in range(self.layers):
            p = f"blocks.{i}."
            bias = g[p + "pos_embedding.embedding.weight"][bucket].permute(2, 0, 1)[None]  # (1, H, L, L)
            h = self.rms(x, g[p + "norm1.weight"])
            q, k, v = (F.linear(h, g[p + f"attn.{n}.weight"]).view(B, L, H, -1).transpose(1, 2) for n in "qkv")
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)  # T5: no 1/sqrt(d)
            x = x + F.linear(o.transpose(1, 2).reshape(B, L, -1), g[p + "attn.o.weight"])
            h = self.rms(x, g[p + "norm2.weight"])
            gate = F.gelu(F.linear(h, g[p + "ffn.gate.0.weight"]), approximate="tanh")
            u = F.linear(h, g[p + "ffn.fc1.weight"]) * gate
            x = x + F.linear(u, g[p + "ffn.fc2.weight"])
        return self.rms(x, g["norm.weight"])


def case_umt5(a, rng):
    from lyra2.models.umt5 import UMT5Encoder
    dim, heads, ffn, layers, L, vocab = (1024, 16, 2816, 4, 512, 4096) if not a.small else (256, 4, 704, 2, 128, 512)
    w = umt5_weights(rng, vocab, dim, heads, ffn, layers, 32)
    enc = UMT5Encoder(w)
    ref = TorchUMT5(w, heads)
    ids = rng.integers(1, vocab, size=(1, L))
    tids = torch.from_numpy(ids)
    with torch.no_grad():
        t = interleaved({"lyra2": lambda: enc(ids), "torch": lambda: ref(tids)}, a.repeat)
        out_t = ref(tids).numpy()
    flop = enc.cost(tokens=L)["flops"]
    return report(f"umT5 dim {dim}, {layers} layers, {L} tokens", flop, enc(ids), out_t, t)


# ---------------------------------------------------------------- CLIP vision tower (lyra2/models/clip.py)

def clip_weights(rng, width, layers, mlp, patch, grid):
    W = width
    w = {"visual.patch_embedding.weight": rnd(rng, W, 3, patch, patch, scale=1 / math.sqrt(3 * patch * patch)),
         "visual.cls_embedding": rnd(rng, 1, 1, W, scale=1 / math.sqrt(W)),
         "visual.pos_embedding": rnd(rng, 1, 1 + grid * grid, W, scale=1 / math.sqrt(W)),
         "visual.pre_norm.weight": 1 + rnd(rng, W, scale=0.1), "visual.pre_norm.bias": rnd(rng, W, scale=0.05)}
    for i in range(layers):
        p = f"visual.transformer.{i}."
        for n in ("norm1", "norm2"):
            w[p + n + ".weight"] = 1 + rnd(rng, W, scale=0.1)
            w[p + n + ".bias"] = rnd(rng, W, scale=0.05)
        for n, (o, k) in {"attn.to_qkv": (3 * W, W), "attn.proj": (W, W), "mlp.0": (mlp, W), "mlp.2": (W, mlp)}.items():
            w[p + n + ".weight"] = rnd(rng, o, k, scale=1 / math.sqrt(k))
            w[p + n + ".bias"] = rnd(rng, o, scale=0.05)
    return w


class TorchCLIP:
    """Every block but the last runs (Lyra uses the penultimate features), no post-norm, no head."""

    def __init__(self, w, heads, size, patch):
        self.w = {k: torch.from_numpy(v) for k, v in w.items()}
        self.heads, self.size, self.patch = heads, size, patch
        self.used = len([k for k in w if k.endswith(".norm1.weight")]) - 1

    def __call__(self, image):
        g, H = self.w, self.heads
        x = F.interpolate(image, size=(self.size, self.size), mode="bicubic", align_corners=False) * 0.5 + 0.5
        mean = torch.tensor((0.48145466, 0.4578275, 0.40821073)).view(1, 3, 1, 1)
        std = torch.tensor((0.26862954, 0.26130258, 0.27577711)).view(1, 3, 1, 1)
        x = F.conv2d((x - mean) / std, g["visual.patch_embedding.weight"], stride=self.patch)
        B, W = x.shape[:2]
        x = torch.cat([g["visual.cls_embedding"].expand(B, 1, W), x.flatten(2).transpose(1, 2)], 1)
        x = F.layer_norm(x + g["visual.pos_embedding"], (W,), g["visual.pre_norm.weight"], g["visual.pre_norm.bias"])
        for i in range(self.used):
            p = f"visual.transformer.{i}."
            h = F.layer_norm(x, (W,), g[p + "norm1.weight"], g[p + "norm1.bias"])
            qkv = F.linear(h, g[p + "attn.to_qkv.weight"], g[p + "attn.to_qkv.bias"])
            q, k, v = (t.reshape(B, -1, H, W // H).transpose(1, 2) for t in qkv.chunk(3, -1))
            o = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, -1, W)
            x = x + F.linear(o, g[p + "attn.proj.weight"], g[p + "attn.proj.bias"])
            h = F.layer_norm(x, (W,), g[p + "norm2.weight"], g[p + "norm2.bias"])
            u = F.gelu(F.linear(h, g[p + "mlp.0.weight"], g[p + "mlp.0.bias"]))
            x = x + F.linear(u, g[p + "mlp.2.weight"], g[p + "mlp.2.bias"])
        return x


def case_clip(a, rng):
    from lyra2.models.clip import CLIPVision
    width, heads, layers, size, patch = (1280, 16, 5, 224, 14) if not a.small else (320, 4, 3, 112, 14)
    w = clip_weights(rng, width, layers, 4 * width, patch, size // patch)
    net = CLIPVision(w, num_heads=heads)
    ref = TorchCLIP(w, heads, size, patch)
    img = rnd(rng, 1, 3, size, size).clip(-1, 1)
    timg = torch.from_numpy(img)
    with torch.no_grad():
        t = interleaved({"lyra2": lambda: net(img), "torch": lambda: ref(timg)}, a.repeat)
        out_t = ref(timg).numpy()
    return report(f"CLIP width {width}, {layers - 1} blocks run, {size} px", net.cost()["flops"], net(img), out_t, t)


# ---------------------------------------------------------------- Wan VAE (full-sequence form of tests/test_vae.py)

def vae_weights(rng, dim):
    """Random weights of the real architecture at width `dim`: the tiny test checkpoint's names and shapes with
    every width-derived channel count scaled from its width 8 (RGB and latent channels kept)."""
    tiny = np.load(os.path.join(ROOT, "tests", "data", "vae_tiny_weights.npz"))
    f = dim // 8
    keep_out = {"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "encoder.head.2.weight",
                "encoder.head.2.bias", "decoder.head.2.weight", "decoder.head.2.bias"}
    keep_in = {"conv1.weight", "conv2.weight", "decoder.conv1.weight", "encoder.conv1.weight"}
    w = {}
    for k in tiny.files:
        shape = list(tiny[k].shape)
        if k not in keep_out and shape[0] != 3:
            shape[0] *= f
        if len(shape) > 1 and k not in keep_in and not k.endswith(".gamma"):
            shape[1] *= f
        if k.endswith(".gamma"):
            w[k] = 1 + rnd(rng, *shape, scale=0.1)
        elif k.endswith(".bias"):
            w[k] = rnd(rng, *shape, scale=0.02)
        else:
            w[k] = rnd(rng, *shape, scale=1 / math.sqrt(np.prod(shape[1:])))
    return w


class TorchVAE:
    def __init__(self, w):
        self.P = {k: torch.from_numpy(v) for k, v in w.items()}

    def conv(self, x, k, stride=(1, 1, 1), pad_t=0, pad_hw=(0, 0, 0, 0), w=None):
        """x (B, C, T, H, W); pad_t zero frames in front (causal), pad_hw = (top, bottom, left, right)."""
        top, bottom, left, right = pad_hw
        w = self.P[k + ".weight"] if w is None else w
        if w.dim() == 4:
            w = w[:, :, None]
        x = F.pad(x, (left, right, top, bottom, pad_t, 0))
        return F.conv3d(x, w, self.P[k + ".bias"], stride=stride)

    def causal3(self, x, k):
        p = (self.P[k + ".weight"].shape[3] - 1) // 2
        return self.conv(x, k, pad_t=2, pad_hw=(p, p, p, p))

    def norm(self, x, g):
        return F.normalize(x, dim=1, eps=1e-12) * math.sqrt(x.shape[1]) * g.view(1, -1, 1, 1, 1)

    def resblock(self, x, k):
        P = self.P
        h = self.conv(x, k + ".shortcut") if k + ".shortcut.weight" in P else x
        r = self.causal3(F.silu(self.norm(x, P[k + ".residual.0.gamma"])), k + ".residual.2")
        r = self.causal3(F.silu(self.norm(r, P[k + ".residual.3.gamma"])), k + ".residual.6")
        return r + h

    def attention(self, x, k):
        P = self.P
        B, C, T, H, W = x.shape
        u = self.norm(x, P[k + ".norm.gamma"]).permute(0, 2, 1, 3, 4).reshape(B * T, C, H, W)
        qkv = F.conv2d(u, P[k + ".to_qkv.weight"], P[k + ".to_qkv.bias"]).flatten(2).transpose(1, 2)  # (BT, n, 3C)
        q, kk, v = (t[:, None] for t in qkv.chunk(3, -1))
        a = F.scaled_dot_product_attention(q, kk, v)[:, 0].transpose(1, 2).reshape(B * T, C, H, W)
        o = F.conv2d(a, P[k + ".proj.weight"], P[k + ".proj.bias"])
        return x + o.view(B, T, C, H, W).permute(0, 2, 1, 3, 4)

    def down_spatial(self, x, k):
        return self.conv(x, k + ".resample.1", stride=(1, 2, 2), pad_hw=(0, 1, 0, 1))

    def up_spatial(self, x, k):
        x = x.repeat_interleave(2, 3).repeat_interleave(2, 4)
        return self.conv(x, k + ".resample.1", pad_hw=(1, 1, 1, 1))

    def down3d(self, x, k):
        y = self.down_spatial(x, k)
        rest = self.conv(y, k + ".time_conv", stride=(2, 1, 1))
        return torch.cat([y[:, :, :1], rest], 2)

    def up3d(self, x, k):
        B, C = x.shape[:2]
        parts = [x[:, :, :1]]
        if x.shape[2] > 1:
            tc = self.causal3(x[:, :, 1:], k + ".time_conv")
            n = tc.shape[2]
            parts.append(torch.stack([tc[:, :C], tc[:, C:]], 3).reshape(B, C, 2 * n, *x.shape[3:]))
        return self.up_spatial(torch.cat(parts, 2), k)

    def blocks(self, x, prefix, count):
        for i in range(count):
            k = f"{prefix}.{i}"
            if k + ".residual.0.gamma" in self.P:
                x = self.resblock(x, k)
            elif k + ".time_conv.weight" in self.P:
                x = (self.down3d if prefix.startswith("encoder") else self.up3d)(x, k)
            else:
                x = (self.down_spatial if prefix.startswith("encoder") else self.up_spatial)(x, k)
        return x

    def head(self, x, k):
        return self.causal3(F.silu(self.norm(x, self.P[k + ".head.0.gamma"])), k + ".head.2")

    def encode(self, video):
        x = self.causal3(video, "encoder.conv1")
        x = self.blocks(x, "encoder.downsamples", 11)
        x = self.resblock(self.attention(self.resblock(x, "encoder.middle.0"), "encoder.middle.1"), "encoder.middle.2")
        return self.conv(self.head(x, "encoder"), "conv1")[:, :16]

    def decode(self, z):
        x = self.causal3(self.conv(z, "conv2"), "decoder.conv1")
        x = self.resblock(self.attention(self.resblock(x, "decoder.middle.0"), "decoder.middle.1"), "decoder.middle.2")
        return self.head(self.blocks(x, "decoder.upsamples", 15), "decoder")


def case_vae(a, rng):
    from lyra2.models.vae import WanVAE
    T, H, W = (int(n) for n in a.vae_size.split("x"))
    dim = 96
    if a.small:
        dim, T, H, W = 32, 5, 32, 64
    w = vae_weights(rng, dim)
    vae = WanVAE(w, threads=a.threads)
    ref = TorchVAE(w)
    video = rnd(rng, 1, 3, T, H, W).clip(-1, 1)
    tv = torch.from_numpy(video)

    def lyra_run():
        return vae.decode(vae.encode(video, normalize=False), normalized=False)

    def torch_run():
        return ref.decode(ref.encode(tv))

    with torch.no_grad():
        t = interleaved({"lyra2": lyra_run, "torch": torch_run}, a.repeat)
        out_t = torch_run().numpy()
    flop = vae_flops(ref, tv)
    return report(f"Wan VAE dim {dim}, encode+decode {T}x{H}x{W}", flop, lyra_run(), out_t, t)


def vae_flops(ref, video):
    """2·MACs of every conv3d/conv2d/attention product of one encode+decode, counted by a torch dispatch hook."""
    from torch.utils.flop_counter import FlopCounterMode
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        ref.decode(ref.encode(video))
    return fc.get_total_flops()


# ---------------------------------------------------------------- Lyra-2 DiT (benchmarks/torch_dit.py)

def dit_config(dim, layers, small):
    """The issue's DiT sizes: real text/CLIP/camera/buffer widths and FramePack layout, FFN 3·dim, squeeze 256."""
    from lyra2 import testing
    return {"dim": dim, "ffn": 3 * dim, "layers": layers, "text_dim": 256 if small else 4096, "freq_dim": 256,
            "clip_dim": 1280, "squeeze": 64 if small else 256, "in_dim": 36, "out_dim": 16, "cam_dim": 1536,
            "buffer_in": 1280, "layout": testing.LAYOUT}


def dit_inputs(rng, cfg, T, H, W):
    """Inputs of the real kinds: latents ~N(0, 1), mask ones, Plücker origins/directions in [-1, 1], buffer
    canonical coordinates and depth in [-1, 1] (holes -1), umT5 rows with zero padding, CLIP tokens."""
    x = rnd(rng, 1, cfg["out_dim"], T, H, W)
    mask = np.ones((1, 4, T, H, W), np.float32)
    cond = rnd(rng, 1, cfg["in_dim"] - cfg["out_dim"] - 4, T, H, W)
    plucker = rng.uniform(-1, 1, (1, 384, T, H, W)).astype(np.float32)
    buf = rng.uniform(-1, 1, (1, cfg["buffer_in"], T, H, W)).astype(np.float32)
    buf[rng.random(buf.shape) < 0.2] = -1.0  # warp holes
    text = rnd(rng, 1, 512, cfg["text_dim"], scale=0.2)
    text[:, 40:] = 0  # padded prompt rows
    clip = rnd(rng, 1, 257, cfg["clip_dim"])
    return {"x_B_C_T_H_W": x, "timesteps_B_T": np.array([[937.5]], np.float32), "crossattn_emb": text,
            "frame_cond_crossattn_emb_B_L_D": clip, "y_B_C_T_H_W": np.concatenate([mask, cond, plucker], 1),
            "y_buffer_B_C_T_H_W": buf}


def dit_flops(ref, args):
    """Torch's FlopCounterMode over one forward, plus 2·H·Lq·Lk·(d + dv) per attention: the counter does not count
    torch's fused CPU attention kernel."""
    import torch_dit
    from torch.utils.flop_counter import FlopCounterMode
    attn = [0]
    plain = torch_dit.sdpa

    def counted(q, k, v):
        attn[0] += 2 * q.shape[0] * q.shape[1] * k.shape[1] * (q.shape[2] + v.shape[2])
        return plain(q, k, v)

    torch_dit.sdpa = counted
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            ref(*args)
    finally:
        torch_dit.sdpa = plain
    return fc.get_total_flops() + attn[0]


def case_dit(a, rng, dim, heads, layers):
    from lyra2.models.dit import LyraDiT
    from torch_dit import TorchDiT, dit_weights
    H, W = (30, 52) if not a.small else (12, 20)
    if a.small:
        dim, heads = dim // 4, heads // 2
    cfg = dit_config(dim, layers, a.small)
    w = dit_weights(rng, cfg)
    net = LyraDiT(w, cfg["layout"], num_heads=heads, n_threads=a.threads)
    T = net.layout["total_frames"]
    ref = TorchDiT(w, cfg["layout"], heads, (H, W))
    inp = dit_inputs(rng, cfg, T, H, W)
    targs = [torch.from_numpy(inp[k]) for k in ("x_B_C_T_H_W", "timesteps_B_T", "crossattn_emb",
                                                 "frame_cond_crossattn_emb_B_L_D", "y_B_C_T_H_W",
                                                 "y_buffer_B_C_T_H_W")]
    del w
    with torch.no_grad():
        t = interleaved({"lyra2": lambda: net(**inp), "torch": lambda: ref(*targs)}, a.repeat)
        out_t = ref(*targs).numpy()
    return report(f"DiT dim {dim}, {heads}x{dim // heads}, {layers} block(s), {ref.L} tokens", dit_flops(ref, targs),
                  net(**inp), out_t, t)


# ---------------------------------------------------------------- DiT-size attention

def case_attention(a, rng, L, H, D, label):
    from lyra2 import _testops
    if a.small:
        L = L // 8
    q, k, v = (rnd(rng, 1, L, H, D) for _ in range(3))
    tq, tk, tv = (torch.from_numpy(x).transpose(1, 2) for x in (q, k, v))
    s = 1 / math.sqrt(D)
    with torch.no_grad():
        t = interleaved({"lyra2": lambda: _testops.attention(q, k, v, s),
                         "torch": lambda: F.scaled_dot_product_attention(tq, tk, tv, scale=s)}, a.repeat)
        out_t = F.scaled_dot_product_attention(tq, tk, tv, scale=s).transpose(1, 2).numpy()
    return report(f"{label}: self-attention L={L}, {H}x{D}", 4.0 * L * L * H * D, _testops.attention(q, k, v, s),
                  out_t, t)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--only", default="dit,attention,umt5,clip,vae")
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--vae-size", default="5x128x224", help="frames x height x width of the VAE video")
    a = ap.parse_args()
    if torch is None:
        print("cpu_vs_torch: torch is not installed; nothing to compare (pip install torch to run it)")
        return 0
    os.environ["LYRA2_NUM_THREADS"] = str(a.threads)  # read by lyra2 when the backend is created
    torch.set_num_threads(a.threads)
    import lyra2
    from lyra2 import _core
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  threads {a.threads}  repeat {a.repeat}  "
          f"torch {torch.__version__}  lyra2 {_core.build_info()}  load avg {os.getloadavg()[0]:.1f}", flush=True)
    rng = np.random.default_rng(0)
    ok = True
    for name in a.only.split(","):
        if name == "dit":
            ok &= case_dit(a, rng, 512, 4, 2)
            ok &= case_dit(a, rng, 1024, 8, 1)
        elif name == "attention":
            ok &= case_attention(a, rng, 9602, 4, 128, "DiT dim 512")
            ok &= case_attention(a, rng, 9602, 8, 128, "DiT dim 1024")
        elif name in ("umt5", "clip", "vae"):
            ok &= globals()["case_" + name](a, rng)
        else:
            raise SystemExit(f"--only: unknown case {name!r} (allowed: dit, attention, umt5, clip, vae)")
    del lyra2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
