"""FramePack layout strings (csrc/models/framepack.c; upstream M:400-473, M:448-451, M:435-440).

References: upstream M:400-473, M:448-451, M:435-440 (the FramePack layout) for the released layout at 480x832 (latent
60x104), the golden JSON's framepack_params (copied below), and a small independent token-count formula written here."""
import math

import pytest

from lyra2.models.dit import DEFAULT_FRAMEPACK, framepack_layout

# From golden/dit_tiny.json "framepack_params" (upstream _init_lyra2_metadata output).
GOLDEN_SPLITS = [1, 4, 1, 16, 2, 1, 20]
GOLDEN_KERNEL_IDS = [0, 1, 2, 3, 4, 5, -1]
GOLDEN_KERNEL_TYPES = "ksskkk"


def test_released_layout_matches_upstream_params():
    fp = framepack_layout(DEFAULT_FRAMEPACK)
    assert fp["splits"] == GOLDEN_SPLITS
    assert fp["kernel_ids"] == GOLDEN_KERNEL_IDS
    assert fp["kernel_types"] == GOLDEN_KERNEL_TYPES
    assert fp["kernel_sizes"] == [1, 2, 1, 4, 2, 1]
    assert (fp["new_frames"], fp["history_frames"], fp["total_frames"]) == (20, 25, 45)
    assert (fp["spatial_frames"], fp["temporal_frames"]) == (5, 20)  # 5 s-slots, 20 k-slots (upstream M:400-473)


def test_released_layout_tokens_at_480p():
    # tokens per chunk (FramePack layout, upstream M:400-473) at latent 60x104, L = 38246, gen_start = 7046.
    fp = framepack_layout(DEFAULT_FRAMEPACK, (60, 104))
    assert [c["n_tokens"] for c in fp["chunks"]] == [1560, 1560, 1560, 416, 390, 1560, 31200]
    assert [c["slot0"] for c in fp["chunks"]] == [0, 1, 5, 6, 22, 24, 25]
    assert [c["patch"] for c in fp["chunks"]] == [(1, 2, 2), (1, 4, 4), (1, 2, 2), (4, 8, 8), (2, 4, 4), (1, 2, 2),
                                                 (1, 2, 2)]
    assert fp["chunks"][3]["grid"] == (4, 8, 13)  # H padded 60 -> 64
    assert (fp["tokens"], fp["gen_start"]) == (38246, 7046)


def token_count(splits, types, kernels, n_new, h, w):
    """Independent count: replicate padding rounds every grid up (ceil)."""
    total = 0
    for n, t, k in zip(splits, types, kernels):
        pt = k if t == "k" else 1
        total += math.ceil(n / pt) * math.ceil(h / (2 * k)) * math.ceil(w / (2 * k))
    return total + n_new * (h // 2) * (w // 2)


@pytest.mark.parametrize("layout,splits,types,kernels,n_new", [
    ("f16k4f2k2f1k1_g3", [16, 2, 1], "kkk", [4, 2, 1], 3),          # upstream config default
    ("f1k1f2s2f1s1f2k2f1k1_g2", [1, 2, 1, 2, 1], "ksskk", [1, 2, 1, 2, 1], 2),  # golden forward_warp layout
    ("f3k2f1s3_g7", [3, 1], "ks", [2, 3], 7),
    ("f10k10_g1", [10], "k", [10], 1),
])
@pytest.mark.parametrize("hw", [(2, 2), (4, 6), (60, 104), (90, 160)])
def test_other_layouts(layout, splits, types, kernels, n_new, hw):
    fp = framepack_layout(layout, hw)
    assert fp["splits"] == splits + [n_new]
    assert fp["kernel_types"] == types
    assert fp["kernel_sizes"] == kernels
    assert fp["tokens"] == token_count(splits, types, kernels, n_new, *hw)
    assert fp["gen_start"] == fp["tokens"] - n_new * (hw[0] // 2) * (hw[1] // 2)


@pytest.mark.parametrize("bad", [
    "", "g20", "_g20", "f1k1", "f1k1_g", "f1k1_g0", "f0k1_g2", "f1k0_g2", "f1x1_g2", "f1k1g2", "ff1k1_g2",
    "f1k+1_g2", "f1k1_g2_extra", "f1k1_g2 ", " f1k1_g2", "f1kk1_g2", "F1k1_g2", "f1k1_g-2", "f1k1f_g2",
    "f1k1_g1025", "f100k1f100k1_g2",  # 202 frames > the 128-slot RoPE table
    "f1k1" * 17 + "_g1",  # 17 segments
])
def test_rejects_bad_layouts(bad):
    with pytest.raises(ValueError, match="framepack"):
        framepack_layout(bad)


@pytest.mark.parametrize("hw", [(3, 4), (4, 5), (0, 4), (258, 4), (4, 258)])
def test_rejects_bad_latent_sizes(hw):
    with pytest.raises(ValueError, match="latent"):
        framepack_layout(DEFAULT_FRAMEPACK, hw)


def test_type_errors():
    with pytest.raises(TypeError):
        framepack_layout(b"f1k1_g2")
