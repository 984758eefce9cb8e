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
* negative prompt (1, 512, 64) and a rank-4 DMD LoRA on every block's attention and FFN Linears;
* the zoom script's style LoRAs, rank 4: realism_boost (kohya keys, cross-attention and FFN) and
  detail_enhancer (musubi keys, self-attention and FFN), both with .alpha = rank / 2;
* Depth Anything 3 nested (any-view ViT 64 wide x 10 blocks, metric ViT 48 x 6, DPT heads with 16 features, and
  the Gaussian head of lyra2.reconstruct: GSDPT with 16 features, SH degree 2) and
  MoGe v1 (ViT 64 x 6, head 32 -> [32, 16, 16]) at the sizes of the golden tiny models, their output layers
  set so that the random networks give positive depth, a ~60 degree camera, little sky and a projective MoGe
  point map (so DA3 -> MoGe alignment and the depth-window updates run as with real weights). Their head
  counts and taps are in each file's "lyra2_config" metadata, MoGe's token range in its "model_config".

Weights are N(0, 1)/sqrt(fan_in) with LayerNorm/RMSNorm gains near 1, from numpy's RandomState(seed) in a fixed
order, written as bf16 (the converter's storage dtype). Same seed -> identical files; the run's frames depend on
them. The models are random: the frames are noise-like, they only exercise the pipeline.
"""
from __future__ import annotations

import json
import os
import struct

import numpy as np

from .checkpoint import FILES
from .io import save_safetensors

__all__ = ["make_tiny_checkpoint", "TINY", "REAL", "random_weights", "RandomWeights", "use_random_weights",
           "vae_tensor_shapes", "dit_tensor_shapes", "umt5_tensor_shapes",
           "clip_tensor_shapes", "da3_tensor_shapes", "da3_gs_tensor_shapes", "moge_tensor_shapes", "tiny_spm_model",
           "emulated_cuda_stats", "emulated_cuda_reset", "emulated_cuda_transfers", "run_networks"]

LAYOUT = "f1k1f4s2f1s1f16k4f2k2f1k1_g20"
TINY = {
    "dit": {"dim": 128, "ffn": 256, "layers": 2, "text_dim": 64, "freq_dim": 256, "clip_dim": 80, "squeeze": 32,
            "in_dim": 36, "out_dim": 16, "cam_dim": 1536, "buffer_in": 1280, "layout": LAYOUT},
    "vae": {"dim": 8, "z_dim": 16},
    "umt5": {"dim": 64, "heads": 2, "ffn": 96, "layers": 2, "buckets": 32},
    "clip": {"width": 80, "patch": 14, "grid": 2, "layers": 3, "mlp": 320, "embed": 24},
    "lora_rank": 4,
    # DA3 nested and MoGe v1 at the golden tiny sizes (spec golden README: da3_tiny / moge_tiny); the options the
    # weights do not determine go into each file's "lyra2_config" / "model_config" metadata.
    "da3": {"dim": 64, "depth": 10, "heads": 2, "ffn_hidden": 176, "grid": 6, "alt_start": 3, "features": 16,
            "oc": [8, 16, 32, 32], "cam_enc_depth": 4, "metric_dim": 48, "metric_depth": 6},
    "da3_options": {"metric_heads": 3, "cam_enc_heads": 2, "taps": [3, 5, 7, 9], "metric_taps": [1, 2, 4, 5]},
    "moge": {"dim": 64, "depth": 6, "grid": 6, "dim_proj": 32, "dim_up": [32, 16, 16], "last_ch": 8},
    "moge_options": {"num_heads": 4},
    "moge_model_config": {"num_tokens_range": [30, 60], "mask_threshold": 0.5, "remap_output": "exp"},
}

#: The released sizes (16B Lyra-2 DiT, Wan 2.1 VAE, umT5-XXL, open-clip ViT-H/14 and a rank-64 DMD LoRA), in the keys
#: of TINY: random_weights(network, "real") creates them where the network lives, benchmarks/make_random_checkpoint.py
#: writes them to a folder.
REAL = {
    "dit": {"dim": 5120, "ffn": 13824, "layers": 40, "text_dim": 4096, "freq_dim": 256, "clip_dim": 1280,
            "squeeze": 256, "in_dim": 36, "out_dim": 16, "cam_dim": 1536, "buffer_in": 1280, "layout": LAYOUT},
    "vae": {"dim": 96, "z_dim": 16},
    "umt5": {"dim": 4096, "heads": 64, "ffn": 10240, "layers": 24, "buckets": 32, "vocab": 256384},
    "clip": {"width": 1280, "patch": 14, "grid": 16, "layers": 32, "mlp": 5120, "embed": 1024},
    "lora_rank": 64,
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
    downsampling [False, True, True]; upstream TOK:306-546) at base width `dim`."""
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
    """[(name, shape)] of the Lyra-2 DiT (upstream WL:86-96, WL:99-115, WL:286) for the config dict `c` (see
    TINY["dit"])."""
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


# ---------------------------------------------------------------- depth networks (DA3 nested, MoGe v1)

def _vit_block(prefix, d, ffn, swiglu=False, qk_norm_dim=0):
    """[(name, shape)] of one DINOv2 block (LayerScale; GELU MLP, or SwiGLU w12/w3 as DA3's any-view ViT;
    q/k LayerNorms of width qk_norm_dim when > 0)."""
    s = [(f"{prefix}.norm1.weight", (d,)), (f"{prefix}.norm1.bias", (d,)), (f"{prefix}.attn.qkv.weight", (3 * d, d)),
         (f"{prefix}.attn.qkv.bias", (3 * d,)), (f"{prefix}.attn.proj.weight", (d, d)),
         (f"{prefix}.attn.proj.bias", (d,))]
    if qk_norm_dim:
        s += [(f"{prefix}.attn.{n}_norm.{p}", (qk_norm_dim,)) for n in "qk" for p in ("weight", "bias")]
    s += [(f"{prefix}.ls1.gamma", (d,)), (f"{prefix}.norm2.weight", (d,)), (f"{prefix}.norm2.bias", (d,))]
    if swiglu:
        s += [(f"{prefix}.mlp.w12.weight", (2 * ffn, d)), (f"{prefix}.mlp.w12.bias", (2 * ffn,)),
              (f"{prefix}.mlp.w3.weight", (d, ffn)), (f"{prefix}.mlp.w3.bias", (d,))]
    else:
        s += [(f"{prefix}.mlp.fc1.weight", (ffn, d)), (f"{prefix}.mlp.fc1.bias", (ffn,)),
              (f"{prefix}.mlp.fc2.weight", (d, ffn)), (f"{prefix}.mlp.fc2.bias", (d,))]
    return s + [(f"{prefix}.ls2.gamma", (d,))]


def _dpt_head(prefix, dim_in, features, oc, dual):
    """[(name, shape)] of DA3's DPT head (dual: the any-view DualDPT's main branch, with its input LayerNorm and
    (depth, confidence) outputs; else the metric DPT with the sky branch). The DualDPT's aux (ray) branch is
    not written: Lyra never runs it and the loader ignores it (upstream DA3net:245-248)."""
    F = features
    s = [(f"{prefix}.norm.weight", (dim_in,)), (f"{prefix}.norm.bias", (dim_in,))] if dual else []
    for k in range(4):
        s += [(f"{prefix}.projects.{k}.weight", (oc[k], dim_in, 1, 1)), (f"{prefix}.projects.{k}.bias", (oc[k],))]
    s += [(f"{prefix}.resize_layers.0.weight", (oc[0], oc[0], 4, 4)), (f"{prefix}.resize_layers.0.bias", (oc[0],)),
          (f"{prefix}.resize_layers.1.weight", (oc[1], oc[1], 2, 2)), (f"{prefix}.resize_layers.1.bias", (oc[1],)),
          (f"{prefix}.resize_layers.3.weight", (oc[3], oc[3], 3, 3)), (f"{prefix}.resize_layers.3.bias", (oc[3],))]
    s += [(f"{prefix}.scratch.layer{k + 1}_rn.weight", (F, oc[k], 3, 3)) for k in range(4)]
    for r in range(1, 5):
        for u in ((1, 2) if r < 4 else (2,)):
            for c in (1, 2):
                b = f"{prefix}.scratch.refinenet{r}.resConfUnit{u}.conv{c}"
                s += [(f"{b}.weight", (F, F, 3, 3)), (f"{b}.bias", (F,))]
        s += [(f"{prefix}.scratch.refinenet{r}.out_conv.weight", (F, F, 1, 1)),
              (f"{prefix}.scratch.refinenet{r}.out_conv.bias", (F,))]
    s += [(f"{prefix}.scratch.output_conv1.weight", (F // 2, F, 3, 3)), (f"{prefix}.scratch.output_conv1.bias", (F // 2,)),
          (f"{prefix}.scratch.output_conv2.0.weight", (32, F // 2, 3, 3)), (f"{prefix}.scratch.output_conv2.0.bias", (32,)),
          (f"{prefix}.scratch.output_conv2.2.weight", (2 if dual else 1, 32, 1, 1)),
          (f"{prefix}.scratch.output_conv2.2.bias", (2 if dual else 1,))]
    if not dual:
        s += [(f"{prefix}.scratch.sky_output_conv2.0.weight", (32, F // 2, 3, 3)),
              (f"{prefix}.scratch.sky_output_conv2.0.bias", (32,)),
              (f"{prefix}.scratch.sky_output_conv2.2.weight", (1, 32, 1, 1)),
              (f"{prefix}.scratch.sky_output_conv2.2.bias", (1,))]
    return s


def da3_tensor_shapes(c):
    """[(name, shape)] of Depth Anything 3 nested (docs/REFERENCES.md#weight-names: any-view ViT with camera tokens,
    q/k-norm
    from block `alt_start`, SwiGLU; DualDPT; camera encoder and decoder; metric ViT + DPT with sky) for the
    config dict `c` (see TINY["da3"]). Unused tensors (DualDPT aux branch, mask tokens, GS head) are left out."""
    A, M, G = c["dim"], c["metric_dim"], c["grid"]
    p = "da3.backbone.pretrained"
    s = [(f"{p}.cls_token", (1, 1, A)), (f"{p}.camera_token", (1, 2, A)), (f"{p}.pos_embed", (1, 1 + G * G, A)),
         (f"{p}.patch_embed.proj.weight", (A, 3, 14, 14)), (f"{p}.patch_embed.proj.bias", (A,))]
    for i in range(c["depth"]):
        s += _vit_block(f"{p}.blocks.{i}", A, c["ffn_hidden"], swiglu=True,
                        qk_norm_dim=A // c["heads"] if i >= c["alt_start"] else 0)
    s += [(f"{p}.norm.weight", (A,)), (f"{p}.norm.bias", (A,))]
    s += _dpt_head("da3.head", 2 * A, c["features"], c["oc"], dual=True)
    s += [("da3.cam_dec.backbone.0.weight", (2 * A, 2 * A)), ("da3.cam_dec.backbone.0.bias", (2 * A,)),
          ("da3.cam_dec.backbone.2.weight", (2 * A, 2 * A)), ("da3.cam_dec.backbone.2.bias", (2 * A,)),
          ("da3.cam_dec.fc_t.weight", (3, 2 * A)), ("da3.cam_dec.fc_t.bias", (3,)),
          ("da3.cam_dec.fc_qvec.weight", (4, 2 * A)), ("da3.cam_dec.fc_qvec.bias", (4,)),
          ("da3.cam_dec.fc_fov.0.weight", (2, 2 * A)), ("da3.cam_dec.fc_fov.0.bias", (2,))]
    for i in range(c["cam_enc_depth"]):
        s += _vit_block(f"da3.cam_enc.trunk.{i}", A, 4 * A)
    s += [("da3.cam_enc.token_norm.weight", (A,)), ("da3.cam_enc.token_norm.bias", (A,)),
          ("da3.cam_enc.trunk_norm.weight", (A,)), ("da3.cam_enc.trunk_norm.bias", (A,)),
          ("da3.cam_enc.pose_branch.fc1.weight", (A // 2, 9)), ("da3.cam_enc.pose_branch.fc1.bias", (A // 2,)),
          ("da3.cam_enc.pose_branch.fc2.weight", (A, A // 2)), ("da3.cam_enc.pose_branch.fc2.bias", (A,))]
    p = "da3_metric.backbone.pretrained"
    s += [(f"{p}.cls_token", (1, 1, M)), (f"{p}.pos_embed", (1, 1 + G * G, M)),
          (f"{p}.patch_embed.proj.weight", (M, 3, 14, 14)), (f"{p}.patch_embed.proj.bias", (M,))]
    for i in range(c["metric_depth"]):
        s += _vit_block(f"{p}.blocks.{i}", M, 4 * M)
    s += [(f"{p}.norm.weight", (M,)), (f"{p}.norm.bias", (M,))]
    return s + _dpt_head("da3_metric.head", M, c["features"], c["oc"], dual=False)


def moge_tensor_shapes(c):
    """[(name, shape)] of MoGe v1 (upstream MOGE:214-242, DU:46, MCFG:25-35, MOGE:24-142: DINOv2 ViT, 4 tapped
    projections, upsample stages
    with UV channels concatenated, points and mask output blocks) for the config dict `c` (see TINY["moge"]).
    The backbone's unused mask token is left out."""
    D, G, P = c["dim"], c["grid"], c["dim_proj"]
    s = [("backbone.cls_token", (1, 1, D)), ("backbone.pos_embed", (1, 1 + G * G, D)),
         ("backbone.patch_embed.proj.weight", (D, 3, 14, 14)), ("backbone.patch_embed.proj.bias", (D,))]
    for i in range(c["depth"]):
        s += _vit_block(f"backbone.blocks.{i}", D, 4 * D)
    s += [("backbone.norm.weight", (D,)), ("backbone.norm.bias", (D,))]
    for k in range(4):
        s += [(f"head.projects.{k}.weight", (P, D, 1, 1)), (f"head.projects.{k}.bias", (P,))]
    cin = P
    for b, cout in enumerate(c["dim_up"]):
        u = f"head.upsample_blocks.{b}"
        s += [(f"{u}.0.0.weight", (cin + 2, cout, 2, 2)), (f"{u}.0.0.bias", (cout,)),
              (f"{u}.0.1.weight", (cout, cout, 3, 3)), (f"{u}.0.1.bias", (cout,))]
        for r in range(1, 3):
            L = f"{u}.{r}.layers"
            s += [(f"{L}.0.weight", (cout,)), (f"{L}.0.bias", (cout,)), (f"{L}.2.weight", (2 * cout, cout, 3, 3)),
                  (f"{L}.2.bias", (2 * cout,)), (f"{L}.3.weight", (2 * cout,)), (f"{L}.3.bias", (2 * cout,)),
                  (f"{L}.5.weight", (cout, 2 * cout, 3, 3)), (f"{L}.5.bias", (cout,))]
        cin = cout
    last = c["last_ch"]
    for k, n in enumerate((3, 1)):
        s += [(f"head.output_block.{k}.0.weight", (last, cin + 2, 3, 3)), (f"head.output_block.{k}.0.bias", (last,)),
              (f"head.output_block.{k}.2.weight", (n, last, 1, 1)), (f"head.output_block.{k}.2.bias", (n,))]
    return s


def da3_gs_tensor_shapes(c, sh_degree=2):
    """[(name, shape)] of DA3's Gaussian head (GSDPT, Depth-Anything-3 model/gsdpt.py) on the any-view taps of the
    config `c`: the DPT pyramid without norm and sky branch, output_conv2 with 2 + 3 + 4 + 3·(deg+1)² + 1 raw
    channels + 1 density (DA3-giant: 38), and the images merger (3 → F/8 → F/4 → F/2 channels, 3×3 convs)."""
    F = c["features"]
    out_dim = 11 + 3 * (sh_degree + 1) ** 2
    s = [(n, shp) for n, shp in _dpt_head("da3.gs_head", 2 * c["dim"], F, c["oc"], dual=False)
         if ".sky_output_conv2." not in n and ".output_conv2.2." not in n]
    s += [("da3.gs_head.scratch.output_conv2.2.weight", (out_dim, 32, 1, 1)),
          ("da3.gs_head.scratch.output_conv2.2.bias", (out_dim,))]
    ch = [3, F // 8, F // 4, F // 2]
    for i in range(3):
        s += [(f"da3.gs_head.images_merger.{2 * i}.weight", (ch[i + 1], ch[i], 3, 3)),
              (f"da3.gs_head.images_merger.{2 * i}.bias", (ch[i + 1],))]
    return s


def _calibrate_da3_gs(w):
    """The GS head's last conv scaled down (small xy / depth offsets, scales near the middle of their range) and
    its density bias raised so that a random head gives mostly opaque splats."""
    w["da3.gs_head.scratch.output_conv2.2.weight"] *= np.float32(0.1)
    w["da3.gs_head.scratch.output_conv2.2.bias"][-1] = 2.0
    return w


def _transposed(name):
    """ConvTranspose2d weights (in, out, k, k): DPT resize layers 0 and 1, the first layer of MoGe's stages."""
    return name.endswith(("resize_layers.0.weight", "resize_layers.1.weight")) or \
        ("upsample_blocks" in name and name.endswith(".0.0.weight"))


def _random_vision(shapes, rng):
    """DA3 / MoGe init: norm gains 1 + 0.1 N, biases 0.05 N, LayerScale 0.3 + 0.05 N, cls/camera tokens and
    position tables 0.5 N, conv / linear weights N/sqrt(fan_in) (ConvTranspose: fan_in = its input channels)."""
    out = {}
    for name, shape in shapes:
        x = rng.standard_normal(shape)
        last = name.rsplit(".", 1)[-1]
        if last == "gamma":
            x = 0.3 + 0.05 * x
        elif last == "bias":
            x = 0.05 * x
        elif last in ("cls_token", "camera_token", "pos_embed"):
            x = 0.5 * x
        elif len(shape) == 1:
            x = 1.0 + 0.1 * x
        else:
            fan_in = shape[0] if _transposed(name) else int(np.prod(shape[1:]))
            x = x / np.sqrt(fan_in)
        out[name] = x.astype(np.float32)
    return out


def _calibrate_da3(w):
    """Output layers set so that a random DA3 answers like a plausible one: depth exp(small) around 1, a camera
    decoder near the identity pose with a ~60 degree field of view (fov through a ReLU, so its bias is what keeps
    it positive), and a sky head (ReLU, sky = >= 0.3 for the nested merge) that marks almost nothing as sky."""
    for head in ("da3.head", "da3_metric.head"):
        w[f"{head}.scratch.output_conv2.2.weight"] *= np.float32(0.3)
    w["da3.cam_dec.fc_t.weight"] *= np.float32(0.1)
    w["da3.cam_dec.fc_qvec.weight"] *= np.float32(0.05)
    w["da3.cam_dec.fc_qvec.bias"] = np.array([0, 0, 0, 1], np.float32) + 0.01 * w["da3.cam_dec.fc_qvec.bias"]
    w["da3.cam_dec.fc_fov.0.weight"] *= np.float32(0.05)
    w["da3.cam_dec.fc_fov.0.bias"] = np.array([1.0, 1.1], np.float32) + 0.1 * w["da3.cam_dec.fc_fov.0.bias"]
    w["da3_metric.head.scratch.sky_output_conv2.2.weight"] *= np.float32(0.1)
    w["da3_metric.head.scratch.sky_output_conv2.2.bias"][:] = -1.0
    return w


def _calibrate_moge(w, c):
    """MoGe's point head made projective so that the focal/shift recovery (upstream MGT:40-52, MGN:79-112) is well
    conditioned: two hidden
    channels of the points block carry the view-plane UV (the last two input channels) through ReLU(uv + 1),
    the output is x' = u / f, y' = v / f for f = 1.2 plus a little noise, and log z = 1.4 + small; the mask logits
    are biased to ~2 so that most pixels are valid."""
    cin = c["dim_up"][-1] + 2
    a = w["head.output_block.0.0.weight"]
    ab = w["head.output_block.0.0.bias"]
    a[:2] *= np.float32(0.05)
    ab[:2] = 1.0
    for ch in range(2):
        a[ch, cin - 2 + ch, 1, 1] = 1.0
    b = w["head.output_block.0.2.weight"]
    bb = w["head.output_block.0.2.bias"]
    b[:2] *= np.float32(0.05)
    b[2] *= np.float32(0.2)
    for ch in range(2):
        b[ch, ch, 0, 0] = 1.0 / 1.2
        bb[ch] = -1.0 / 1.2
    bb[2] = 1.4
    w["head.output_block.1.2.bias"][:] = 2.0
    return w


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
    negative prompt, DMD and style LoRAs) and the depth models (DA3, MoGe), so generate mode without ``depth=``
    runs DA3 aligned to MoGe for frame 0 and DA3 for the depth-window updates. Same seed -> byte-identical
    files."""
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
    dit_shapes = dict(dit_tensor_shapes(TINY["dit"]))
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
    # Drawn after the generate networks, so adding the depth models left those files as they were.
    da3 = _calibrate_da3(_random_vision(da3_tensor_shapes(TINY["da3"]), rng))
    moge = _calibrate_moge(_random_vision(moge_tensor_shapes(TINY["moge"]), rng), TINY["moge"])
    # DA3's Gaussian head (lyra2.reconstruct), from its own stream so that the other tensors stay as they were
    da3.update(_calibrate_da3_gs(_random_vision(da3_gs_tensor_shapes(TINY["da3"]),
                                                np.random.RandomState([int(seed), 3]))))
    save_safetensors(da3, os.path.join(path, FILES["da3"]), dtype="bf16",
                     metadata={**meta, "lyra2_config": json.dumps(TINY["da3_options"])})
    save_safetensors(moge, os.path.join(path, FILES["moge"]), dtype="bf16",
                     metadata={**meta, "lyra2_config": json.dumps(TINY["moge_options"]),
                               "model_config": json.dumps(TINY["moge_model_config"])})
    # The zoom script's style LoRAs, in the two other key formats upstream converts (upstream T2V:353-432, Z:525-530,
    # T2V:379-380): realism_boost as kohya (diffusion_model.<module>.lora_down / lora_up + .alpha), detail_enhancer as
    # musubi (lora_unet_<module with underscores>.lora_down / lora_up + .alpha).
    for comp, mods, key in (("lora_realism", ("cross_attn.q", "cross_attn.k", "cross_attn.v", "cross_attn.o", "ffn.0"),
                             lambda m: f"diffusion_model.{m}"),
                            ("lora_detail", ("self_attn.q", "self_attn.v", "self_attn.o", "ffn.2"),
                             lambda m: "lora_unet_" + m.replace(".", "_"))):
        style = {}
        for i in range(TINY["dit"]["layers"]):
            for m in mods:
                o, n = dit_shapes[f"blocks.{i}.{m}.weight"]
                k = key(f"blocks.{i}.{m}")
                style[f"{k}.lora_down.weight"] = (rng.standard_normal((r, n)) / np.sqrt(n)).astype(np.float32)
                style[f"{k}.lora_up.weight"] = (rng.standard_normal((o, r)) / np.sqrt(r)).astype(np.float32)
                style[f"{k}.alpha"] = np.array(r / 2, np.float32)  # B·A scaled by alpha / rank = 0.5
        save_safetensors(style, os.path.join(path, FILES[comp]), metadata=meta, dtype="bf16")
    with open(os.path.join(path, FILES["tokenizer"]), "wb") as f:
        f.write(spm)
    return path


# ---------------------------------------------------------------- random weights of any size, without a file

class RandomWeights:
    """Random weights of a network's shapes with no data behind them: the tensors' names, shapes and dtype, and a
    seed. A network that supports them (``LyraDiT``, ``UMT5Encoder``, ``CLIPVision``; the generate models' DiT and
    umT5 through :func:`use_random_weights`) fills each tensor where it lives with the backend op fill_random
    (csrc/nn/ops.h lyra_op_fill_random: a counter-based hash of (seed, tensor name, element index), bit-identical on
    every backend): on a device at placement, so a full-size DiT costs no host memory, no file and no upload. Values:
    biases 0.02·N, gains (1-D, "gamma") 1 + 0.1·N, everything else N / sqrt(fan_in), N an approximate normal (a sum
    of four uniforms), rounded to bf16 for dtype "bf16" (csrc/nn/ops.h lyra_random_fill_rule).

    ``arrays()`` computes the same values on the CPU as a mapping name -> float32 array, for networks without
    their own fill and for comparisons."""

    def __init__(self, network, config, shapes, seed=0, dtype="bf16"):
        if dtype not in ("bf16", "f32", "f16"):
            raise ValueError(f"dtype: {dtype!r} is not one of 'bf16', 'f32', 'f16'")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**64:
            raise ValueError(f"seed: expected an int in [0, 2**64), got {seed!r}")
        self.network, self.config, self.seed, self.dtype = network, config, int(seed), dtype
        self.shapes = [(str(n), tuple(int(d) for d in s)) for n, s in shapes]

    @property
    def _lyra2_random_weights(self):
        """(seed, [(name, shape, dtype)]): what the C weight sources read (csrc/python/py_weight_source.h)."""
        return (self.seed, [(n, s, self.dtype) for n, s in self.shapes])

    @property
    def numel(self):
        return sum(int(np.prod(s)) for _, s in self.shapes)

    @property
    def nbytes(self):
        return self.numel * {"bf16": 2, "f16": 2, "f32": 4}[self.dtype]

    def array(self, name):
        """The float32 values of tensor `name` (bf16-rounded for dtype "bf16"), computed on the CPU."""
        from . import _core

        shape = dict(self.shapes).get(name)
        if shape is None:
            raise KeyError(f"random weights: no tensor {name!r} in the {self.network}")
        a = _core.random_weight_values(shape, name, self.seed, self.dtype == "bf16")
        return a.astype(np.float16).astype(np.float32) if self.dtype == "f16" else a

    def arrays(self):
        """{name: float32 array} of every tensor (host memory: for tiny sizes and for comparisons)."""
        return {n: self.array(n) for n, _ in self.shapes}

    def __repr__(self):
        return (f"RandomWeights({self.network!r}, {len(self.shapes)} tensors, {self.numel / 1e9:.3f} G params, "
                f"{self.dtype}, seed={self.seed})")


def random_weights(network, config="tiny", seed=0, dtype="bf16"):
    """Random weights of `network` ("dit", "vae", "umt5", "clip") at `config`: "tiny" (TINY), "real" (REAL, the
    released sizes) or a dict with the keys of TINY[network] (umT5: plus "vocab") -> :class:`RandomWeights`.

    >>> dit = LyraDiT(random_weights("dit", "real"), device="cuda")   # 34 GB filled on the device, no file
    >>> t5 = UMT5Encoder(random_weights("umt5", "real"), device="cuda")   # 11 GB"""
    sizes = {"tiny": TINY, "real": REAL}
    if isinstance(config, str):
        if config not in sizes:
            raise ValueError(f"config: {config!r} is not 'tiny', 'real' or a dict")
        c = dict(sizes[config][network]) if network in sizes[config] else None
    elif isinstance(config, dict):
        c = dict(config)
    else:
        raise TypeError(f"config: expected 'tiny', 'real' or a dict, got {type(config).__name__}")
    if network == "dit":
        shapes = dit_tensor_shapes(c)
    elif network == "vae":
        shapes = vae_tensor_shapes(c["dim"], c["z_dim"])
    elif network == "umt5":
        vocab = c.get("vocab") or tiny_spm_model()[1] + 300
        shapes = umt5_tensor_shapes(c, vocab)
    elif network == "clip":
        shapes = clip_tensor_shapes(c)
    else:
        raise ValueError(f"network: {network!r} is not one of 'dit', 'vae', 'umt5', 'clip'")
    return RandomWeights(network, c, shapes, seed, dtype)


def use_random_weights(folder, **networks):
    """Makes the generate models of checkpoint `folder` use random weights instead of files, which may then be
    absent: ``use_random_weights(folder, dit=random_weights("dit", "real"), umt5=random_weights("umt5", "real"))``;
    with no network the folder's files are used again. On a device the random networks are filled there when they
    are placed — no file, no host copy, nothing uploaded (benchmarks/zoom_e2e.py --random-weights); with block
    streaming the DiT's streamed blocks are filled in host memory; the run's LoRAs are folded where the weights lie,
    fp8 included (csrc/models/dit_lora_fold.c), so the DiT is never written in host memory (csrc/models/dit.h)."""
    import importlib

    gen = importlib.import_module("lyra2.generate")
    for name, w in networks.items():
        if name not in ("dit", "umt5"):
            raise ValueError(f"{name}: only the DiT and umT5 of the generate models take random weights")
        if not isinstance(w, RandomWeights) or w.network != name:
            raise TypeError(f"{name}: expected lyra2.testing.random_weights({name!r}, ...)")
    key = os.path.abspath(os.fspath(folder))
    if networks:
        gen.RANDOM_WEIGHTS[key] = dict(networks)
    else:
        gen.RANDOM_WEIGHTS.pop(key, None)
    gen.release_models()


# ---------------------------------------------------------------- the emulated CUDA device

def emulated_cuda_stats():
    """Counters of the emulated CUDA device (``LYRA2_EMULATED_CUDA=1``, see ``lyra2.backends()``), process-wide
    since the last :func:`emulated_cuda_reset`: ``uploads``/``upload_bytes`` and ``downloads``/``download_bytes``
    (host <-> device copies), ``allocations``/``releases`` of pool blocks, ``live_bytes`` and ``peak_bytes`` of the
    pool, ``ops`` run and ``refused`` (ops given a tensor outside the device pool)."""
    from . import _core

    return _core.emulated_cuda_stats()


def emulated_cuda_reset():
    """Zeroes the emulated device's counters and transfer log (the peak restarts from the live bytes)."""
    from . import _core

    _core.emulated_cuda_reset()


def emulated_cuda_transfers():
    """The emulated device's transfers since the last reset, oldest first: a list of
    ``(direction, bytes, tensor_name)`` with direction "upload" or "download" (the first 4096 are kept)."""
    from . import _core

    log, _ = _core.emulated_cuda_transfers()
    return log


# ---------------------------------------------------------------- memory plans of any checkpoint

def run_networks(folder):
    """The byte terms lyra2.memory's planner takes (``lyra2.memory._plan``; ``memory_plan`` builds those of the
    released sizes) for the networks of a converted checkpoint folder, e.g. a tiny one: the DiT's configuration and
    layout (its forward is measured by the planner), umT5's and CLIP's cost models in their device precision, DA3's
    cost model with the weight bytes a bf16 placement gives its loaded tensors and the VAE's width (the LoRAs are
    folded into the DiT's weights before a device placement: no adapter bytes). MoGe is left out (runs given
    ``depth=`` do not load it)."""
    import importlib

    from . import checkpoint, io
    from .memory import _pair, _numel
    from .models.clip import CLIPVision, clip_cost
    from .models.depth import DepthAnything3
    from .models.umt5 import UMT5Encoder, umt5_cost

    gen = importlib.import_module("lyra2.generate")
    comps = checkpoint.components(folder)
    info = gen.load_models(folder, "cpu")[1]   # the generate models' summary (DiT configuration, VAE width)
    layout = io.safetensors_info(comps["dit"])["metadata"].get("framepack_type", gen.DEFAULT_LAYOUT)
    t5 = umt5_cost(UMT5Encoder(comps["umt5"]).config, 512, precision="bf16")
    cc = CLIPVision(comps["clip"]).config
    clip = clip_cost(cc, precision="f16")
    da3 = DepthAnything3(comps["da3"])
    grid = cc["image_size"] // cc["patch"]
    vz = info["vae_dim"]
    return {"dit": (info["dit_config"], layout), "clip_tokens": grid * grid + 1, "text_dim": info["text_dim"],
            "umt5": (t5["params"] * 2, t5["arena_bytes"]),
            "clip": (clip["params"] * 2, clip["arena_bytes"]),
            "da3": lambda views, h, w, poses: _pair(da3.plan(views, h, w, poses, "bf16")), "moge": (0, 0),
            "vae": (vz, 16, sum(_numel(s) for _, s in vae_tensor_shapes(vz, 16)) * 2)}
