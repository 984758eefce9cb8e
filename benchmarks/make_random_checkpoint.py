"""Writes a converted-layout checkpoint folder with random bf16 weights, for timing without a download.

    python benchmarks/make_random_checkpoint.py OUT            # real sizes (16B DiT, Wan VAE, umT5-XXL, CLIP-H)
    python benchmarks/make_random_checkpoint.py OUT --small    # only the small networks (no DiT, no umT5: ~1.6 GB)
    python benchmarks/make_random_checkpoint.py OUT --tiny     # lyra2.testing.make_tiny_checkpoint (CPU, seconds)

The GPU benchmark no longer needs the large files: benchmarks/zoom_e2e.py --random-weights real creates the DiT's
and umT5's random weights on the device (lyra2.testing.random_weights, filled at placement: no file, no host copy)
and uses this script (make_real with skip=("dit", "umt5"), --small) only for the networks that still load from
files: CLIP, the VAE, the negative prompt and the DMD LoRA (~1.6 GB). The sizes are lyra2.testing.REAL.

Real size: ~33 GB DiT + 11 GB umT5 + 1.3 GB CLIP + 0.25 GB VAE + a rank-64 DMD LoRA, streamed one tensor at a
time (lyra2.io.write_safetensors). Values are a fixed block of N(0, 1) draws tiled with a per-tensor offset and
scaled by 1/sqrt(fan_in) (gains 1 + 0.1 N): numbers of the right magnitude for timing, not a model. The tokenizer
is the tiny hand-written SentencePiece model (its ids all fit the umT5-XXL vocabulary). DA3 and MoGe are not
written (their modules live in lyra2.models.depth / lyra2.models.moge when built)."""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lyra2 import testing  # noqa: E402
from lyra2.checkpoint import FILES  # noqa: E402
from lyra2.io import to_bf16_bits, write_safetensors  # noqa: E402

REAL = testing.REAL  # the released sizes, shared with lyra2.testing.random_weights(..., "real")


def tiled_writer(path, shapes, seed, metadata):
    block = np.random.RandomState(seed).standard_normal(1 << 20).astype(np.float32)

    def producer(name, shape, k):
        def produce():
            n = int(np.prod(shape))
            start = (k * 7919) % block.size
            reps = (start + n + block.size - 1) // block.size
            x = np.tile(block, reps)[start:start + n].reshape(shape) if n > block.size else \
                np.roll(block, -start)[:n].reshape(shape)
            last = name.rsplit(".", 1)[-1]
            if last == "bias":
                x = 0.02 * x
            elif len(shape) == 1 or last == "gamma":
                x = 1.0 + 0.1 * x
            else:
                x = x / np.sqrt(max(int(np.prod(shape[1:])), 1))
            return to_bf16_bits(x)
        return produce

    entries = [(name, "BF16", shape, producer(name, shape, k)) for k, (name, shape) in enumerate(shapes)]
    write_safetensors(path, entries, metadata=metadata)


def make_real(out, seed=0, skip=()):
    """Writes the real-size folder at `out`, leaving out the components named in `skip` (e.g. "dit")."""
    for name in FILES.values():  # some components live in sub-folders (tokenizer/, lora/)
        os.makedirs(os.path.dirname(os.path.join(out, name)), exist_ok=True)
    meta = {"lyra2": "random real-size checkpoint", "seed": str(seed)}
    spm, _ = testing.tiny_spm_model()
    with open(os.path.join(out, FILES["tokenizer"]), "wb") as f:
        f.write(spm)
    r, D, ffn = REAL["lora_rank"], REAL["dit"]["dim"], REAL["dit"]["ffn"]
    lora = []
    for i in range(REAL["dit"]["layers"]):
        for m, (o, n) in {"self_attn.q": (D, D), "self_attn.k": (D, D), "self_attn.v": (D, D), "self_attn.o": (D, D),
                          "cross_attn.q": (D, D), "cross_attn.k": (D, D), "cross_attn.v": (D, D),
                          "cross_attn.o": (D, D), "ffn.0": (ffn, D), "ffn.2": (D, ffn)}.items():
            lora += [(f"diffusion_model.blocks.{i}.{m}.lora_A.weight", (r, n)),
                     (f"diffusion_model.blocks.{i}.{m}.lora_B.weight", (o, r))]
    jobs = [("dit", testing.dit_tensor_shapes(REAL["dit"])),
            ("vae", testing.vae_tensor_shapes(**REAL["vae"])),
            ("umt5", testing.umt5_tensor_shapes(REAL["umt5"], REAL["umt5"]["vocab"])),
            ("clip", testing.clip_tensor_shapes(REAL["clip"])),
            ("negative_prompt", [("t5_text_embeddings", (1, 512, REAL["dit"]["text_dim"]))]),
            ("lora_dmd", lora)]
    for k, (component, shapes) in enumerate(jobs):
        if component in skip:
            continue
        t = time.perf_counter()
        path = os.path.join(out, FILES[component])
        tiled_writer(path, shapes, seed + k, meta)
        n = sum(int(np.prod(s)) for _, s in shapes)
        print(f"{FILES[component]:32s} {n / 1e9:7.3f} G params  {time.perf_counter() - t:7.1f} s", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--tiny", action="store_true", help="tiny CPU-sized folder (lyra2.testing)")
    ap.add_argument("--small", action="store_true",
                    help="real sizes without the DiT and umT5 (zoom_e2e.py --random-weights creates those)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    t = time.perf_counter()
    if a.tiny:
        testing.make_tiny_checkpoint(a.out, seed=a.seed)
    else:
        make_real(a.out, seed=a.seed, skip=("dit", "umt5") if a.small else ())
    print(f"wrote {a.out} in {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
