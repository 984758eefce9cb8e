"""The Lyra-2 DiT forward in plain PyTorch (fp32), for benchmarks/cpu_vs_torch.py (issue 19).

Written from the network's definition (the stage comments of csrc/models/dit_*.c; upstream WL:555-803,
WL:150-212, W:280-437, W:532-566), not from upstream code: tokenization of the packed FramePack sequence (patch,
camera and correspondence-buffer tokens), 3-D RoPE with pooled history angles, time embedding, text/CLIP context, the
Lyra-2 blocks (adaLN self-attention with the camera + buffer q/k bias, two-softmax cross-attention, modulated FFN) and
the head with its channel-fastest unpatchify. Only the layout parser (chunk geometry: slots, kernels, token grids)
comes from lyra2 (`lyra2.models.dit.framepack_layout`), as plain integers.

Weights: the checkpoint's names (lyra2.testing.dit_tensor_shapes) as float32 arrays.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

EPS = 1e-6          # block and head LayerNorm / RMSNorm eps
TEXT_TOKENS = 512
CAM_CHANNELS = 384  # Plücker channels at the end of y (6 × 8 × 8)
OCTAVES = 2         # buffer sin/cos features: sin(πu), cos(πu), sin(2πu), cos(2πu)


def dit_weights(rng, cfg):
    """Random float32 weights of the DiT of config `cfg` (lyra2.testing.TINY["dit"] keys): N(0, 1) / sqrt(fan_in)
    for matrices, 1 + 0.1 N for gains, 0.02 N for biases (magnitudes of a trained model, not a model)."""
    from lyra2 import testing
    w = {}
    for name, shape in testing.dit_tensor_shapes(cfg):
        x = rng.standard_normal(shape, dtype=np.float32)
        last = name.rsplit(".", 1)[-1]
        if last == "bias":
            x *= 0.02
        elif len(shape) == 1:
            x = 1 + 0.1 * x
        else:
            x /= np.float32(math.sqrt(int(np.prod(shape[1:]))))
        w[name] = x
    return w


def _pool_cells(g, frames, q, grid):
    """Average of g (C, frames, Hb, Wb) over the (qt, qh, qw) cells of a history chunk: slots repeated (last one) up
    to frames padded to a multiple of qt, rows/columns replicate-padded to multiples of qh/qw (upstream
    WL:742-789). grid: the chunk's token grid (f, h, w)."""
    qt, qh, qw = q
    f, h, w = grid
    if (qt, qh, qw) == (1, 1, 1):
        return g
    idx = torch.arange(f * qt).clamp(max=frames - 1)
    g = g[:, idx]
    pad_h, pad_w = h * qh - g.shape[2], w * qw - g.shape[3]
    if pad_h or pad_w:
        g = F.pad(g[None], (0, pad_w, 0, pad_h, 0, 0), mode="replicate")[0]
    return F.avg_pool3d(g[None], (qt, qh, qw))[0]


def _pad_end(x, t, h, w):
    """Replicate-pads x (C, T, H, W) at the end to (t, h, w)."""
    pt, ph, pw = t - x.shape[1], h - x.shape[2], w - x.shape[3]
    if not (pt or ph or pw):
        return x
    return F.pad(x[None], (0, pw, 0, ph, 0, pt), mode="replicate")[0]


def _patchify(x, pt, ph, pw):
    """x (C, f·pt, h·ph, w·pw) -> tokens (f·h·w, C·pt·ph·pw), channel slowest, w fastest."""
    C, T, H, W = x.shape
    f, h, w = T // pt, H // ph, W // pw
    x = x.reshape(C, f, pt, h, ph, w, pw).permute(1, 3, 5, 0, 2, 4, 6)
    return x.reshape(f * h * w, C * pt * ph * pw)


def sdpa(q, k, v):
    """softmax(q kᵀ / sqrt(d)) v per head; (H, L, d) given 4-D, which takes torch's fused CPU (flash) kernel (3-D
    inputs take the materialised-softmax math path)."""
    return F.scaled_dot_product_attention(q[None], k[None], v[None])[0]


class TorchDiT:
    def __init__(self, w, layout, num_heads, latent_hw):
        from lyra2.models.dit import framepack_layout
        self.w = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in w.items()}
        self.heads = num_heads
        self.dim = self.w["patch_embedding.weight"].shape[0]
        self.out_dim = self.w["head.head.weight"].shape[0] // 4
        self.layers = len([k for k in w if k.endswith(".modulation") and k.startswith("blocks.")])
        fp = framepack_layout(layout, latent_hw)
        self.chunks, self.L, self.gen_start = fp["chunks"], fp["tokens"], fp["gen_start"]
        self.H, self.W = latent_hw
        self.Hb, self.Wb = (self.H + 1) // 2, (self.W + 1) // 2
        # The RoPE angles depend only on the layout and the grid: built once, as lyra2 keeps its table per grid.
        self.phi = self.rope_angles(fp["total_frames"])

    # ---- helpers

    def lin(self, x, name, bias=True):
        return F.linear(x, self.w[name + ".weight"], self.w.get(name + ".bias") if bias else None)

    @staticmethod
    def rms(x, g):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * g

    @staticmethod
    def cell(c):
        """Pooling cell (qt, qh, qw) of a chunk: (K, K, K) for 'k', (1, K, K) for 's', (1, 1, 1) for generated."""
        K = c["kernel"]
        return (K if c["type"] == "k" else 1, K, K) if c["kernel_id"] >= 0 else (1, 1, 1)

    # ---- §3.5 RoPE angles (L, head_dim / 2)

    def rope_angles(self, T):
        d = self.dim // self.heads
        dh = 2 * (d // 6)
        dt = d - 2 * dh

        def freqs(n):
            return 1.0 / torch.pow(torch.tensor(10000.0), torch.arange(0, n, 2, dtype=torch.float32) / n)

        t = torch.arange(T, dtype=torch.float32)[:, None] * freqs(dt)
        h = torch.arange(self.Hb, dtype=torch.float32)[:, None] * freqs(dh)
        w = torch.arange(self.Wb, dtype=torch.float32)[:, None] * freqs(dh)
        nt, nh = t.shape[1], h.shape[1]
        base = torch.cat([t[:, None, None].expand(T, self.Hb, self.Wb, nt),
                          h[None, :, None].expand(T, self.Hb, self.Wb, nh),
                          w[None, None].expand(T, self.Hb, self.Wb, nh)], -1).permute(3, 0, 1, 2)  # (d/2, T, Hb, Wb)
        parts = []
        for c in self.chunks:
            g = base[:, c["slot0"]:c["slot0"] + c["frames"]].double()  # the mean in f64 like torch's CPU avg_pool
            g = _pool_cells(g, c["frames"], self.cell(c), c["grid"]).float()
            parts.append(g.reshape(g.shape[0], -1).t())
        return torch.cat(parts, 0)

    @staticmethod
    def rope(x, phi):
        """Interleaved pairs (x[2p], x[2p+1]) rotated by phi[p]; x (L, H, d), phi (L, d/2)."""
        c, s = torch.cos(phi)[:, None], torch.sin(phi)[:, None]
        a, b = x[..., 0::2], x[..., 1::2]
        return torch.stack([a * c - b * s, a * s + b * c], -1).flatten(-2)

    # ---- §3.1-3.4 tokens

    def tokenize(self, x, y, buf):
        X = torch.cat([x[0], y[0, :y.shape[1] - CAM_CHANNELS]], 0)  # (in_dim, T, H, W)
        cam5 = y[0, y.shape[1] - CAM_CHANNELS:]
        C5, T = cam5.shape[:2]
        cam = cam5.reshape(C5, T, self.Hb, 2, self.Wb, 2).permute(0, 3, 5, 1, 2, 4).reshape(4 * C5, T, self.Hb,
                                                                                            self.Wb)
        toks, cams, bufs = [], [], []
        for c in self.chunks:
            s0, n = c["slot0"], c["frames"]
            pt, ph, pw = c["patch"]
            f, h, w = c["grid"]
            name = "patch_embedding" if c["kernel_id"] < 0 else f"clean_patch_embeddings.{c['kernel_id']}"
            xp = _pad_end(X[:, s0:s0 + n], f * pt, h * ph, w * pw)
            toks.append(self.lin(_patchify(xp, pt, ph, pw), name))
            g = _pool_cells(cam[:, s0:s0 + n], n, self.cell(c), c["grid"])
            cams.append(g.reshape(g.shape[0], -1).t())
            Cb = buf.shape[1]
            if c["type"] == "k":
                u = torch.full((c["n_tokens"], 4 * Cb), -1.0)
                val = torch.zeros(c["n_tokens"], 1)
            else:
                b = buf[0, :, s0:s0 + n]
                if c["kernel"] > 1:
                    b = F.avg_pool3d(b[None], (1, c["kernel"], c["kernel"]))[0]
                hs, ws = (b.shape[2] + 1) // 2, (b.shape[3] + 1) // 2
                u = _patchify(_pad_end(b, n, 2 * hs, 2 * ws), 1, 2, 2)
                val = torch.ones(c["n_tokens"], 1)
            bufs.append(torch.cat([u, val], 1))
        return torch.cat(toks, 0), torch.cat(cams, 0), torch.cat(bufs, 0)

    # ---- §3.8 one block

    def block(self, i, x, e0, camtok, buftok, ctx_txt, ctx_img):
        p = f"blocks.{i}."
        L, D, H = x.shape[0], self.dim, self.heads
        d = D // H
        m = self.w[p + "modulation"][0] + e0  # (6, D)
        # q/k bias: camera embedding + validity · buffer embedding of the sin/cos features
        u, val = buftok[:, :-1], buftok[:, -1:]
        z = torch.cat([f(u * np.float32(2 ** o * math.pi)) for o in range(OCTAVES) for f in (torch.sin, torch.cos)], 1)
        kq = self.lin(camtok, p + "cam_encoder", False) + \
            self.lin(self.lin(z, p + "buffer_encoder.0", False), p + "buffer_encoder.1", False) * val
        # self-attention
        y = F.layer_norm(x, (D,), eps=EPS) * (1 + m[1]) + m[0]
        xk = y + kq
        q = self.rms(self.lin(xk, p + "self_attn.q"), self.w[p + "self_attn.norm_q.weight"]).view(L, H, d)
        k = self.rms(self.lin(xk, p + "self_attn.k"), self.w[p + "self_attn.norm_k.weight"]).view(L, H, d)
        v = self.lin(y, p + "self_attn.v").view(L, H, d)
        q, k = self.rope(q, self.phi), self.rope(k, self.phi)
        o = sdpa(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1))
        x = x + self.lin(o.transpose(0, 1).reshape(L, D), p + "self_attn.o") * m[2]
        # cross-attention: text and image tokens, two softmaxes summed
        xn = F.layer_norm(x, (D,), self.w[p + "norm3.weight"], self.w[p + "norm3.bias"], EPS)
        q = self.rms(self.lin(xn, p + "cross_attn.q"), self.w[p + "cross_attn.norm_q.weight"])
        kt = self.rms(self.lin(ctx_txt, p + "cross_attn.k"), self.w[p + "cross_attn.norm_k.weight"])
        vt = self.lin(ctx_txt, p + "cross_attn.v")
        ki = self.rms(self.lin(ctx_img, p + "cross_attn.k_img"), self.w[p + "cross_attn.norm_k_img.weight"])
        vi = self.lin(ctx_img, p + "cross_attn.v_img")

        def heads(t):
            return t.view(t.shape[0], H, d).transpose(0, 1)

        q = heads(q)
        o = sdpa(q, heads(kt), heads(vt)) + sdpa(q, heads(ki), heads(vi))
        x = x + self.lin(o.transpose(0, 1).reshape(L, D), p + "cross_attn.o")
        # FFN
        n2 = F.layer_norm(x, (D,), eps=EPS) * (1 + m[4]) + m[3]
        f = self.lin(F.gelu(self.lin(n2, p + "ffn.0"), approximate="tanh"), p + "ffn.2")
        return x + f * m[5]

    # ---- the forward

    def __call__(self, x, t, text, clip, y, buf):
        g = self.w
        D = self.dim
        tok, camtok, buftok = self.tokenize(x, y, buf)
        # §3.6 time embedding: sinusoid in f64, cos first, then f32
        half = g["time_embedding.0.weight"].shape[1] // 2
        a = float(t.reshape(-1)[0]) * torch.pow(10000.0, -torch.arange(half, dtype=torch.float64) / half)
        s = torch.cat([torch.cos(a), torch.sin(a)]).float()
        e = self.lin(F.silu(self.lin(s, "time_embedding.0")), "time_embedding.2")
        e0 = self.lin(F.silu(e), "time_projection.1").view(6, D)
        # §3.7 context
        ctx_txt = self.lin(F.gelu(self.lin(text[0], "text_embedding.0"), approximate="tanh"), "text_embedding.2")
        c = F.layer_norm(clip[0], (clip.shape[2],), g["img_emb.proj.0.weight"], g["img_emb.proj.0.bias"], 1e-5)
        c = self.lin(F.gelu(self.lin(c, "img_emb.proj.1")), "img_emb.proj.3")
        ctx_img = F.layer_norm(c, (D,), g["img_emb.proj.4.weight"], g["img_emb.proj.4.bias"], 1e-5)
        h = tok
        for i in range(self.layers):
            h = self.block(i, h, e0, camtok, buftok, ctx_txt, ctx_img)
        # §3.9 head on e (not e0), generated tokens only, unpatchified channel fastest
        hm = g["head.modulation"][0] + e
        o = self.lin(F.layer_norm(h, (D,), eps=EPS) * (1 + hm[1]) + hm[0], "head.head")[self.gen_start:]
        c = self.chunks[-1]
        f, hh, ww = c["grid"]
        o = o.view(f, hh, ww, 2, 2, self.out_dim).permute(5, 0, 1, 3, 2, 4).reshape(self.out_dim, f, 2 * hh, 2 * ww)
        return o[None, :, :, :self.H, :self.W]
