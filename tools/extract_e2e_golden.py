"""Extracts what tests/test_e2e_tiny.py needs from the golden set's e2e_tiny.* files (upstream nv-tlabs/lyra @ 9fffc9a
run end to end at tiny sizes, see tests/data/e2e_tiny_README.md) into tests/data:

    python tools/extract_e2e_golden.py GOLDEN_DIR [OUT_DIR]      # OUT_DIR default: tests/data

- e2e_tiny.npz: the keys the tests read, float32 / integer values unchanged, a few sliced (listed in SLICES);
- e2e_tiny_weights.npz: the six networks' weights under "<network>/<upstream name>", as the bf16 bit patterns
  (uint16) of the golden's float32 values, which are all on the bf16 grid (checked here), so widening them back
  is exact and the file is half the size;
- e2e_tiny_spm.model: the tokenizer, copied."""
import os
import shutil
import sys

import numpy as np

NETWORKS = ("dit", "vae", "umt5", "clip", "da3", "moge")
KEYS = [
    # the run: inputs, cameras, frames
    "input_rgb", "image_chw01", "caption_ids", "caption_mask", "neg_ids", "neg_mask", "t5", "neg_t5", "depth0",
    "K", "w2c", "Ks", "frames_uint8",
    # first-frame depth
    "da3_depth", "da3_mask", "moge_depth", "moge_mask", "moge_scale",
    # VAE priming and the sampled latents of each chunk
    "prime_history_latents", "chunk0_inf_out", "chunk1_inf_out",
    # spatial cache (frame 0, then the DA3 window after chunk 0) and chunk 1's history
    "cache_depth", "cache_frame_id", "chunk1_prep_history_full",
    # the DA3 depth-window update after chunk 0
    "da3win0_frames", "da3win0_depth",
]
for c in (0, 1):
    KEYS += [f"chunk{c}_inf_last_hist_frame", f"chunk{c}_clip_tokens", f"chunk{c}_retrieved",
             f"chunk{c}_prep_latents", f"chunk{c}_prep_mask", f"chunk{c}_prep_cond_latent", f"chunk{c}_prep_buffer"]
# (key, index, stored name): one UniPC step of the DiT per chunk (step 0 in chunk 0, step 1 in chunk 1) and
# 4 decoded frames per chunk (the first latent's in chunk 0, the last latent's in chunk 1: the end of the stream)
SLICES = [("chunk0_dit_x", 0, "chunk0_step0_dit_x"), ("chunk0_dit_t", 0, "chunk0_step0_dit_t"),
          ("chunk0_v_cond", 0, "chunk0_step0_v_cond"), ("chunk0_v_uncond", 0, "chunk0_step0_v_uncond"),
          ("chunk1_dit_x", 1, "chunk1_step1_dit_x"), ("chunk1_dit_t", 1, "chunk1_step1_dit_t"),
          ("chunk1_v_cond", 1, "chunk1_step1_v_cond"), ("chunk1_v_uncond", 1, "chunk1_step1_v_uncond"),
          ("chunk0_decoded", (0, slice(None), slice(0, 4)), "chunk0_decoded_0_4"),
          ("chunk1_decoded", (0, slice(None), slice(76, 80)), "chunk1_decoded_76_80")]
# float frames the tests feed back: the DA3 window after chunk 0 (0, 8, ..., 80), which holds every frame chunk 1's
# preparation reads (frame 80, the buffer camera's, and the retrieved ones)
FRAMES = list(range(0, 81, 8))


def main(golden, out):
    with np.load(os.path.join(golden, "e2e_tiny.npz")) as z:
        g = {k: z[k] for k in z.files}
    data = {k: g[k] for k in KEYS}
    for key, index, name in SLICES:
        data[name] = np.ascontiguousarray(g[key][index])
    assert set(int(f) for f in g["chunk1_retrieved"][:, 1]) <= set(FRAMES)
    assert np.array_equal(g["da3win0_frames"], FRAMES[1:])
    data["frames_index"] = np.array(FRAMES, np.int64)
    data["frames_float"] = np.ascontiguousarray(g["frames_float"][:, FRAMES].transpose(1, 0, 2, 3))
    # what the tests derive instead of storing: chunk 0's history is the priming, its buffer depth depth0, chunk 1's
    # buffer depth the window depth of frame 80, frame 0 the image
    assert np.array_equal(g["chunk0_prep_history_full"], g["prime_history_latents"])
    assert np.array_equal(g["chunk0_prep_buffer_depth"][0, 0], g["depth0"])
    assert np.array_equal(g["chunk1_prep_buffer_depth"][0, 0], g["cache_depth"][-1, 0, 0])
    assert np.array_equal(g["frames_float"][:, 0], g["image_chw01"][0] * 2 - 1)
    np.savez_compressed(os.path.join(out, "e2e_tiny.npz"), **data)
    weights = {}
    for net in NETWORKS:
        with np.load(os.path.join(golden, f"e2e_tiny_weights_{net}.npz")) as z:
            for k in z.files:
                bits = np.ascontiguousarray(z[k], np.float32).view(np.uint32)
                assert not (bits & 0xFFFF).any(), f"{net}/{k} is not on the bf16 grid"
                weights[f"{net}/{k}"] = (bits >> 16).astype(np.uint16)
    np.savez_compressed(os.path.join(out, "e2e_tiny_weights.npz"), **weights)
    shutil.copyfile(os.path.join(golden, "e2e_tiny_spm.model"), os.path.join(out, "e2e_tiny_spm.model"))
    for name in ("e2e_tiny.npz", "e2e_tiny_weights.npz", "e2e_tiny_spm.model"):
        print(f"{name}: {os.path.getsize(os.path.join(out, name)) / 1e6:.2f} MB")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2] if len(sys.argv) == 3 else os.path.join(os.path.dirname(__file__), "..", "tests",
                                                                            "data"))
