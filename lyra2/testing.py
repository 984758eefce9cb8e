"""Tiny checkpoints for tests and demos: `make_tiny_checkpoint(path, seed=0)`.

Writes a complete converted-layout folder (file names from `lyra2.checkpoint.FILES`) with random weights at
tiny, mutually consistent sizes, so the whole generate pipeline runs on a laptop CPU in seconds:

* DiT: the released FramePack layout ``f1k1f4s2f1s1f16k4f2k2f1k1_g20`` (so a chunk is the real 80 frames), width
  128 (one head of 128, the RoPE table of the real model), 2 blocks, FFN 256, text width 64, CLIP width 80,
  buffer squeeze 32; camera (1536) and buffer (1280 -> 20480 sin/cos) inputs at their real sizes;
* Wan VAE: base width 8, z_dim 16 (the latent normalisation tables are the 16-channel Wan ones);
* umT5: width 64, 2 heads, 2 blocks, FFN 96, vocabulary = the tiny tokenizer's ids;
* tokenizer: a hand-written SentencePiece unigram model (pad, </s>, <unk>, "▁", printable ASCII, a few words);
* CLIP: width 80 (one head of 80), patch 14, image 28 (5 tokens), 3 blocks (2 used);
* negative prompt (1, 512, 64) and a rank-4 DMD LoRA on every block's attention and FFN Linears.

Weights are N(0, 1)/sqrt(fan_in) with LayerNorm/RMSNorm gains near 1, from numpy's RandomState(seed) in a fixed
order, written as bf16 (the converter's storage dtype). Same seed -> identical files; the run's frames depend on
them. The models are random: the frames are noise-like, they only exercise the pipeline.
"""
from __future__ import annotations

import os
import struct

import numpy as np

from .checkpoint import FILES
from .io import save_safetensors

__all__ = ["make_tiny_checkpoint", "TINY", "vae_tensor_shapes", "dit_tensor_shapes", "umt5_tensor_shapes",
           "clip_tensor_shapes", "tiny_spm_model"]

LAYOUT = "f1k1f4s2f1s1f16k4f2k2f1k1_g20"
TINY = {
    "dit": {"dim": 128, "ffn": 256, "layers": 2, "text_dim": 64, "freq_dim": 256, "clip_dim": 80, "squeeze": 32,
            "in_dim": 36, "out_dim": 16, "cam_dim": 1536, "buffer_in": 1280, "layout": LAYOUT},
    "vae": {"dim": 8, "z_dim": 16},
    "umt5": {"dim": 64, "heads": 2, "ffn": 96, "layers": 2, "buckets": 32},
    "clip": {"width": 80, "patch": 14, "grid": 2, "layers": 3, "mlp": 320, "embed": 24},
    "lora_rank": 4,
}


# ---------------------------------------------------------------- shapes

def _res_block(prefix, cin, cout):
    out = [(f"{prefix}.residual.0.gamma", (cin, 1, 1, 1)), (f"{prefix}.residual.2.weight", (cout, cin, 3, 3, 3)),
           (f"{prefix}.residual.2.bias", (cout,)), (f"{prefix}.residual.3.gamma", (cout, 1, 1, 1)),
           (f"{prefix}.residual.6.weight", (cout, cout, 3, 3, 3)), (f"{prefix}.residual.6.bias", (cout,))]
    if cin != cout:
        out += [(f"{prefix}.shortcut.weight", (cout, cin, 1, 1, 1)), (f"{prefix}.shortcut.bias", (cout,))]
    return out


def _attn_block(prefix, c):
    return [(f"{prefix}.norm.gamma", (c, 1, 1)), (f"{prefix}.to_qkv.weight", (3 * c, c, 1, 1)),
            (f"{prefix}.to_qkv.bias", (3 * c,)), (f"{prefix}.proj.weight", (c, c, 1, 1)), (f"{prefix}.proj.bias", (c,))]


def vae_tensor_shapes(dim, z_dim):
    """[(name, shape)] of the Wan 2.1 VAE (dim_mult [1, 2, 4, 4], 2 residual blocks per stage, temporal
    downsampling [False, True, True]; encoders.md Appendix A) at base width `dim`."""
    shapes = [("encoder.conv1.weight", (dim, 3, 3, 3, 3)), ("encoder.conv1.bias", (dim,))]
    dims = [dim * m for m in (1, 1, 2, 4, 4)]
    k = 0
    for i in range(4):
        cin, cout = dims[i], dims[i + 1]
        for r in range(2):
            shapes += _res_block(f"encoder.downsamples.{k}", cin if r == 0 else cout, cout)
            k += 1
        if i < 3:
            shapes += [(f"encoder.downsamples.{k}.resample.1.weight", (cout, cout, 3, 3)),
                       (f"encoder.downsamples.{k}.resample.1.bias", (cout,))]
            if i > 0:
                shapes += [(f"encoder.downsamples.{k}.time_conv.weight", (cout, cout, 3, 1, 1)),
                           (f"encoder.downsamples.{k}.time_conv.bias", (cout,))]
            k += 1
    top = dims[-1]
    shapes += _res_block("encoder.middle.0", top, top) + _attn_block("encoder.middle.1", top)
    shapes += _res_block("encoder.middle.2", top, top)
    shapes += [("encoder.head.0.gamma", (top, 1, 1, 1)), ("encoder.head.2.weight", (2 * z_dim, top, 3, 3, 3)),
               ("encoder.head.2.bias", (2 * z_dim,)), ("conv1.weight", (2 * z_dim, 2 * z_dim, 1, 1, 1)),
               ("conv1.bias", (2 * z_dim,)), ("conv2.weight", (z_dim, z_dim, 1, 1, 1)), ("conv2.bias", (z_dim,))]
    ddims = [dim * m for m in (4, 4, 4, 2, 1)]
    shapes += [("decoder.conv1.weight", (ddims[0], z_dim, 3, 3, 3)), ("decoder.conv1.bias", (ddims[0],))]
    shapes += _res_block("decoder.middle.0", ddims[0], ddims[0]) + _attn_block("decoder.middle.1", ddims[0])
    shapes += _res_block("decoder.middle.2", ddims[0], ddims[0])
    k = 0
    for i in range(4):
        cin, cout = ddims[i], ddims[i + 1]
        if i in (1, 2, 3):
            cin //= 2  # the previous upsample halves the channels (Wan 2.1)
        for r in range(3):
            shapes += _res_block(f"decoder.upsamples.{k}", cin if r == 0 else cout, cout)
            k += 1
        if i < 3:
            shapes += [(f"decoder.upsamples.{k}.resample.1.weight", (cout // 2, cout, 3, 3)),
                       (f"decoder.upsamples.{k}.resample.1.bias", (cout // 2,))]
            if i < 2:
                shapes += [(f"decoder.upsamples.{k}.time_conv.weight", (cout * 2, cout, 3, 1, 1)),
                           (f"decoder.upsamples.{k}.time_conv.bias", (cout * 2,))]
            k += 1
    shapes += [("decoder.head.0.gamma", (ddims[-1], 1, 1, 1)), ("decoder.head.2.weight", (3, ddims[-1], 3, 3, 3)),
               ("decoder.head.2.bias", (3,))]
    return shapes


def _layout_segments(layout):
    from . import _core

    info = _core.dit_framepack(layout)
    return list(zip(info["splits"], info["kernel_types"], info["kernel_sizes"]))


def dit_tensor_shapes(c):
    """[(name, shape)] of the Lyra-2 DiT (network.md §5.2) for the config dict `c` (see TINY["dit"])."""
    D, ffn, cin = c["dim"], c["ffn"], c["in_dim"]
    s = [("patch_embedding.weight", (D, cin * 4)), ("patch_embedding.bias", (D,)),
         ("text_embedding.0.weight", (D, c["text_dim"])), ("text_embedding.0.bias", (D,)),
         ("text_embedding.2.weight", (D, D)), ("text_embedding.2.bias", (D,)),
         ("time_embedding.0.weight", (D, c["freq_dim"])), ("time_embedding.0.bias", (D,)),
         ("time_embedding.2.weight", (D, D)), ("time_embedding.2.bias", (D,)),
         ("time_projection.1.weight", (6 * D, D)), ("time_projection.1.bias", (6 * D,))]
    for i in range(c["layers"]):
        b = f"blocks.{i}"
        s.append((f"{b}.modulation", (1, 6, D)))
        for a in ("self_attn", "cross_attn"):
            for m in ("q", "k", "v", "o"):
                s += [(f"{b}.{a}.{m}.weight", (D, D)), (f"{b}.{a}.{m}.bias", (D,))]
            s += [(f"{b}.{a}.norm_q.weight", (D,)), (f"{b}.{a}.norm_k.weight", (D,))]
            if a == "self_attn":
                s += [(f"{b}.norm3.weight", (D,)), (f"{b}.norm3.bias", (D,))]
        s += [(f"{b}.cross_attn.k_img.weight", (D, D)), (f"{b}.cross_attn.k_img.bias", (D,)),
              (f"{b}.cross_attn.v_img.weight", (D, D)), (f"{b}.cross_attn.v_img.bias", (D,)),
              (f"{b}.cross_attn.norm_k_img.weight", (D,)),
              (f"{b}.ffn.0.weight", (ffn, D)), (f"{b}.ffn.0.bias", (ffn,)),
              (f"{b}.ffn.2.weight", (D, ffn)), (f"{b}.ffn.2.bias", (D,)),
              (f"{b}.cam_encoder.weight", (D, c["cam_dim"])),
              (f"{b}.buffer_encoder.0.weight", (c["squeeze"], c["buffer_in"] * 16)),
              (f"{b}.buffer_encoder.1.weight", (D, c["squeeze"]))]
    s += [("head.modulation", (1, 2, D)), ("head.head.weight", (4 * c["out_dim"], D)),
          ("head.head.bias", (4 * c["out_dim"],)),
          ("img_emb.proj.0.weight", (c["clip_dim"],)), ("img_emb.proj.0.bias", (c["clip_dim"],)),
          ("img_emb.proj.1.weight", (c["clip_dim"], c["clip_dim"])), ("img_emb.proj.1.bias", (c["clip_dim"],)),
          ("img_emb.proj.3.weight", (D, c["clip_dim"])), ("img_emb.proj.3.bias", (D,)),
          ("img_emb.proj.4.weight", (D,)), ("img_emb.proj.4.bias", (D,))]
    for k, (_, typ, K) in enumerate(_layout_segments(c["layout"])):
        pt = K if typ == "k" else 1
        s += [(f"clean_patch_embeddings.{k}.weight", (D, cin * pt * 2 * K * 2 * K)),
              (f"clean_patch_embeddings.{k}.bias", (D,))]
    return s


def umt5_tensor_shapes(c, vocab):
    s = [("token_embedding.weight", (vocab, c["dim"]))]
    for i in range(c["layers"]):
        b = f"blocks.{i}"
        s += [(f"{b}.norm1.weight", (c["dim"],))]
        s += [(f"{b}.attn.{m}.weight", (c["dim"], c["dim"])) for m in "qkvo"]
        s += [(f"{b}.norm2.weight", (c["dim"],)), (f"{b}.ffn.gate.0.weight", (c["ffn"], c["dim"])),
              (f"{b}.ffn.fc1.weight", (c["ffn"], c["dim"])), (f"{b}.ffn.fc2.weight", (c["dim"], c["ffn"])),
              (f"{b}.pos_embedding.embedding.weight", (c["buckets"], c["heads"]))]
    return s + [("norm.weight", (c["dim"],))]


def clip_tensor_shapes(c):
    W, P, G = c["width"], c["patch"], c["grid"]
    s = [("visual.cls_embedding", (1, 1, W)), ("visual.pos_embedding", (1, 1 + G * G, W)),
         ("visual.patch_embedding.weight", (W, 3, P, P)), ("visual.pre_norm.weight", (W,)),
         ("visual.pre_norm.bias", (W,))]
    for i in range(c["layers"]):
        b = f"visual.transformer.{i}"
        s += [(f"{b}.norm1.weight", (W,)), (f"{b}.norm1.bias", (W,)), (f"{b}.attn.to_qkv.weight", (3 * W, W)),
              (f"{b}.attn.to_qkv.bias", (3 * W,)), (f"{b}.attn.proj.weight", (W, W)), (f"{b}.attn.proj.bias", (W,)),
              (f"{b}.norm2.weight", (W,)), (f"{b}.norm2.bias", (W,)), (f"{b}.mlp.0.weight", (c["mlp"], W)),
              (f"{b}.mlp.0.bias", (c["mlp"],)), (f"{b}.mlp.2.weight", (W, c["mlp"])), (f"{b}.mlp.2.bias", (W,))]
    return s + [("visual.post_norm.weight", (W,)), ("visual.post_norm.bias", (W,)),
                ("visual.head", (W, c["embed"]))]


def _random(shapes, rng):
    """Gains (norm weights, gammas, modulation-free LayerNorms) ~ 1 + 0.1 N, biases 0.02 N, embeddings N/sqrt(d),
    matrices N/sqrt(fan_in)."""
    out = {}
    for name, shape in shapes:
        x = rng.standard_normal(shape)
        last = name.rsplit(".", 1)[-1]
        is_norm = ("norm" in name or name.startswith("img_emb.proj.0") or name.startswith("img_emb.proj.4")
                   or last == "gamma")
        if last == "bias":
            x = 0.02 * x
        elif is_norm and len(shape) <= 4 and (len(shape) == 1 or last == "gamma"):
            x = 1.0 + 0.1 * x
        elif name.endswith("modulation"):
            x = 0.1 * x
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
            x = x / np.sqrt(max(fan_in, 1))
        out[name] = x.astype(np.float32)
    return out


# ---------------------------------------------------------------- tokenizer (SentencePiece protobuf by hand)

def _varint(n):
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(num, wire, payload):
    key = _varint((num << 3) | wire)
    if wire == 2:
        return key + _varint(len(payload)) + payload
    return key + payload


def tiny_spm_model():
    """Bytes of a minimal SentencePiece unigram ModelProto: <pad> (0), </s> (1), <unk> (2) as T5 numbers them,
    "▁", printable ASCII and a few whole words, with unigram scores; identity normaliser (no charsmap),
    add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces (spm_model.h lists the fields)."""
    pieces = [("<pad>", 0.0, 3), ("</s>", 0.0, 3), ("<unk>", 0.0, 2), ("\u2581", -2.0, 1)]
    words = ["the", "a", "of", "and", "camera", "scene", "city", "street", "forest", "house", "light", "sky"]
    pieces += [("\u2581" + w, -3.0 - 0.1 * i, 1) for i, w in enumerate(words)]
    pieces += [(chr(c), -5.0 - 0.01 * (c - 32), 1) for c in range(33, 127)]
    body = b""
    for text, score, typ in pieces:
        sp = _field(1, 2, text.encode("utf-8")) + _field(2, 5, struct.pack("<f", score)) + _field(3, 0, _varint(typ))
        body += _field(1, 2, sp)
    trainer = (_field(3, 0, _varint(1)) + _field(35, 0, _varint(0)) + _field(40, 0, _varint(2))
               + _field(41, 0, _varint(-1)) + _field(42, 0, _varint(1)) + _field(43, 0, _varint(0)))
    normalizer = (_field(1, 2, b"identity") + _field(3, 0, _varint(1)) + _field(4, 0, _varint(1))
                  + _field(5, 0, _varint(1)))
    return body + _field(2, 2, trainer) + _field(3, 2, normalizer), len(pieces)


# ---------------------------------------------------------------- the folder

def make_tiny_checkpoint(path, seed=0):
    """Writes a tiny converted checkpoint folder at `path` (created if needed) and returns its path.

    Every file of `lyra2.checkpoint.FILES` for generate mode is written (DiT, VAE, umT5, tokenizer, CLIP,
    negative prompt, DMD LoRA); the depth models (DA3, MoGe) are not, so depth comes from the caller or the
    depth module's fallback. Same seed -> byte-identical files."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**32:
        raise ValueError(f"seed: expected an int in [0, 2**32), got {seed!r}")
    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    rng = np.random.RandomState(int(seed))
    spm, n_pieces = tiny_spm_model()
    vocab = n_pieces + 300  # the tokenizer appends 300 <extra_id_N>

    dit = _random(dit_tensor_shapes(TINY["dit"]), rng)
    vae = _random(vae_tensor_shapes(**TINY["vae"]), rng)
    umt5 = _random(umt5_tensor_shapes(TINY["umt5"], vocab), rng)
    umt5["token_embedding.weight"] *= np.sqrt(TINY["umt5"]["dim"])  # embeddings ~ N(0, 1)
    clip = _random(clip_tensor_shapes(TINY["clip"]), rng)
    neg = (0.1 * rng.standard_normal((1, 512, TINY["dit"]["text_dim"]))).astype(np.float32)
    r, D = TINY["lora_rank"], TINY["dit"]["dim"]
    lora = {}
    for i in range(TINY["dit"]["layers"]):
        for m, (o, n) in {"self_attn.q": (D, D), "self_attn.k": (D, D), "self_attn.v": (D, D),
                          "self_attn.o": (D, D), "cross_attn.q": (D, D), "cross_attn.o": (D, D),
                          "ffn.0": (TINY["dit"]["ffn"], D), "ffn.2": (D, TINY["dit"]["ffn"])}.items():
            lora[f"diffusion_model.blocks.{i}.{m}.lora_A.weight"] = (rng.standard_normal((r, n)) / np.sqrt(n)).astype(np.float32)
            lora[f"diffusion_model.blocks.{i}.{m}.lora_B.weight"] = (0.5 * rng.standard_normal((o, r)) / np.sqrt(r)).astype(np.float32)

    meta = {"lyra2": "tiny random checkpoint", "seed": str(int(seed))}
    for name in FILES.values():  # some components live in sub-folders (tokenizer/, lora/)
        os.makedirs(os.path.dirname(os.path.join(path, name)), exist_ok=True)
    save_safetensors(dit, os.path.join(path, FILES["dit"]), metadata=meta, dtype="bf16")
    save_safetensors(vae, os.path.join(path, FILES["vae"]), metadata=meta, dtype="bf16")
    save_safetensors(umt5, os.path.join(path, FILES["umt5"]), metadata=meta, dtype="bf16")
    save_safetensors(clip, os.path.join(path, FILES["clip"]), metadata=meta, dtype="bf16")
    save_safetensors({"t5_text_embeddings": neg}, os.path.join(path, FILES["negative_prompt"]), metadata=meta,
                     dtype="bf16")
    save_safetensors(lora, os.path.join(path, FILES["lora_dmd"]), metadata=meta, dtype="bf16")
    with open(os.path.join(path, FILES["tokenizer"]), "wb") as f:
        f.write(spm)
    return path
