"""The memory plan against a whole generate run: the tiny checkpoint's run on the emulated device
(LYRA2_EMULATED_CUDA=1: every device allocation is a block of its pool, whose high-water mark it counts) must stay
within the plan lyra2.memory computes for the same networks, frame size and frame count
(lyra2.memory._plan over lyra2.testing.run_networks), and the plan must not overstate it by much.

Tolerance: the plan's byte terms are the allocations themselves (the DiT's measured forward, the networks' cost
models, the VAE's dry walk, the driver's buffers), so the run's peak equals the plan's largest stage to within
the allocator's rounding, which the plan covers with a fixed allowance (memory.ALLOC_ROUNDING, 128 KiB: each pool
block rounded up to 256 bytes, each weight tensor aligned to 64 bytes; measured here: a few KiB). So
plan >= peak, and plan - peak <= ALLOC_ROUNDING + 1 % of the peak (the cost models of umT5 and CLIP bound their
measured arenas from above; umT5's stage is not the peak).

The run's LoRAs (the tiny checkpoint's DMD and two style LoRAs) are folded into the DiT's weights at placement, so
the plan counts no adapter bytes; with the adapters kept unfolded on the device the run's peak exceeds the plan (by
155648 bytes here: measured with the fold turned off).

Both residencies of the VAE streams' causal caches are checked: kept on the device for the run (the plan's choice
when the run fits) and parked in host memory outside their stream's phase (when it does not: the run's plan says
vae_parked, from the budget or the device's memory, here LYRA2_EMULATED_CUDA_MEMORY)."""
import importlib

import pytest

from lyra2 import fields, memory, testing
from lyra2.progress import Progress

from tiny_generate import H, W, ckpt, depth, image  # noqa: F401 (fixtures)

gen = importlib.import_module("lyra2.generate")


@pytest.fixture
def emulated(monkeypatch):
    monkeypatch.setenv("LYRA2_EMULATED_CUDA", "1")
    monkeypatch.setenv("LYRA2_EMULATED_CUDA_MEMORY", "1000G")   # not this box's memory: the same plan everywhere
    gen.release_models()   # nothing placed before the run: the pool holds only what the run allocates
    yield
    gen.release_models()


@pytest.mark.parametrize("parked", [False, True], ids=["caches-kept", "caches-parked"])
@pytest.mark.parametrize("case", [dict(num_frames=161), dict(num_frames=81),
                                  dict(num_frames=161, use_dmd=False, num_inference_steps=1, guidance_scale=5.0)],
                         ids=["dmd-161", "dmd-81", "cfg-161"])
def test_whole_run_peak_is_within_the_plan(ckpt, image, depth, emulated, monkeypatch, case, parked):
    """Kept: a card far larger than the run's plan (the released sizes' plan at this frame size, what the run
    decides with, keeps the caches). Parked: a card of exactly the tiny plan's parked peak, far below the released
    sizes' plan, so the run parks, and any allocation past the plan fails."""
    net = testing.run_networks(ckpt)
    gen.release_models()
    use_dmd = case.get("use_dmd", True)   # the sampler's state on the device differs (UniPC + CFG: larger)
    plan = memory._plan(net, H, W, case["num_frames"], "bf16", None, "tiny", first_frame_depth=False,
                        vae_parked=parked, use_dmd=use_dmd)
    if parked:
        monkeypatch.setenv("LYRA2_EMULATED_CUDA_MEMORY", str(plan["peak_bytes"]))
    run_plan = memory.memory_plan((H, W), case["num_frames"], "bf16", None, memory.device_memory_bytes(), use_dmd)
    assert run_plan["vae_parked"] == parked
    testing.emulated_cuda_reset()
    assert testing.emulated_cuda_stats()["live_bytes"] == 0
    args = fields.validate({"prompt": "a quiet street", "seed": 0, **case}, require_image=False)
    args["resolution"] = (H, W)
    logs = []
    gen.run_generate(image, args, checkpoint_folder=ckpt, device="cuda", depth=depth,
                     report=Progress(bar=False, on_log=logs.append))
    peak = testing.emulated_cuda_stats()["peak_bytes"]
    worst = max(plan["stage_peaks"], key=plan["stage_peaks"].get)
    print(f"{case} parked={parked}: emulated pool peak {peak} bytes, plan {plan['peak_bytes']} ({worst}), "
          f"plan - peak = {plan['peak_bytes'] - peak}")
    assert plan["peak_bytes"] >= peak
    assert plan["peak_bytes"] - peak <= memory.ALLOC_ROUNDING + 0.01 * peak
    # the peak is a chunk-loop stage (the DiT's forward here), not the text stage
    assert worst == "dit"
    # the run did what its plan said: cache moves only when parked, and the log says which
    moves = [n for _, _, n in testing.emulated_cuda_transfers() if n == "Wan VAE cache"]
    assert bool(moves) == parked
    said = "parked in pinned host memory" if parked else "kept on the device for the run"
    assert any(said in e["message"] for e in logs)


def test_whole_run_with_da3_per_call_is_within_the_plan(ckpt, image, depth, emulated):
    """Under a budget whose plan loads DA3 for each depth call (11.65 GB at this frame size, as in
    test_generate_device), DA3's weights, arena and pixels are on the device in the depth update only: the peak is
    the plan's with DA3 not resident, to the same tolerance."""
    import lyra2

    budget = 11.65
    run_plan = lyra2.memory_plan((H, W), 161, "bf16", budget)
    assert not run_plan["da3_resident"]
    net = testing.run_networks(ckpt)
    gen.release_models()
    c = memory._costs(net, H, W, 161, "bf16")
    # the tiny DiT's 2 blocks stay resident; the VAE caches as the budget's plan says (kept: they fit)
    stages = memory._stages(c, c["layers"], False, False, run_plan["vae_parked"])
    plan = max(v[0] for v in stages.values())
    testing.emulated_cuda_reset()
    args = fields.validate({"prompt": "a quiet street", "seed": 0, "num_frames": 161}, require_image=False)
    args["resolution"] = (H, W)
    gen.run_generate(image, args, checkpoint_folder=ckpt, device="cuda", depth=depth, max_gpu_memory=budget,
                     report=Progress(bar=False, on_log=None))
    peak = testing.emulated_cuda_stats()["peak_bytes"]
    print(f"DA3 per call: emulated pool peak {peak} bytes, plan {plan}, plan - peak = {plan - peak}")
    assert peak <= plan <= peak + memory.ALLOC_ROUNDING + 0.01 * peak


def test_parked_vae_stream_goes_on_bit_for_bit(ckpt, emulated):
    """A stream whose causal caches were parked in host memory (lyra_vae_session_park, what the generate driver does
    outside each stream's phase) gives back their device memory and, at its next push, goes on exactly as the
    stream that kept them: the same latents, bit for bit (encoder and decoder, parked twice)."""
    import numpy as np

    from lyra2 import _core, checkpoint
    from lyra2.models.vae import WanVAE

    vae = WanVAE(checkpoint.components(ckpt)["vae"], device="cuda", threads=1)
    rng = np.random.default_rng(0)
    video = rng.uniform(-1, 1, (1, 3, 13, H, W)).astype(np.float32)
    lat = rng.standard_normal((1, 16, 4, H // 8, W // 8)).astype(np.float32)
    for make, data, pieces in ((vae.encode_stream, video, [(0, 1), (1, 5), (5, 9), (9, 13)]),
                               (vae.decode_stream, lat, [(0, 1), (1, 2), (2, 3), (3, 4)])):
        kept, parked = make(), make()
        for i, (t0, t1) in enumerate(pieces):
            a = kept.push(data[:, :, t0:t1])
            if i:
                live = testing.emulated_cuda_stats()["live_bytes"]
                _core.vae_park(parked._session)
                _core.vae_park(parked._session)           # parking twice moves nothing more
                freed = live - testing.emulated_cuda_stats()["live_bytes"]
                assert freed == parked.stats()["cache_bytes"] > 0   # the caches' blocks (256-byte multiples here)
                with pytest.raises(ValueError, match="parked"):   # a copy needs the caches on the device
                    parked.copy()
            b = parked.push(data[:, :, t0:t1])
            np.testing.assert_array_equal(a, b)


FRESH_RUN = """
import sys
import numpy as np
import importlib
from lyra2 import fields
from lyra2.progress import Progress
gen = importlib.import_module("lyra2.generate")
ckpt, image, depth, prompt, out = sys.argv[1:]
args = fields.validate({"prompt": prompt, "seed": 0, "num_frames": 81}, require_image=False)
image, depth = np.load(image), np.load(depth)
args["resolution"] = depth.shape
v = gen.run_generate(image, args, checkpoint_folder=ckpt, device="cuda", depth=depth,
                     report=Progress(bar=False, on_log=None))
np.save(out, v.frames)
"""


def test_a_later_run_with_a_new_caption_stays_within_the_plan(ckpt, image, depth, emulated, monkeypatch, tmp_path):
    """Issue 14: a second run in the process with a caption not embedded before needs umT5 on the device. On a card
    of the tiny plan's peak (LYRA2_EMULATED_CUDA_MEMORY), the run's plan says umT5 beside the networks the first
    run placed does not fit (new_caption_releases_placed), so the second run gives them back first: umT5 runs alone
    and the networks are placed again after it (their weights uploaded after umT5's). The pool's peak stays within
    the plan, and the frames are those of a fresh process running the second caption alone."""
    import os
    import subprocess
    import sys

    import numpy as np

    net = testing.run_networks(ckpt)
    gen.release_models()
    plan = memory._plan(net, H, W, 81, "bf16", None, "tiny", first_frame_depth=False, vae_parked=True)
    monkeypatch.setenv("LYRA2_EMULATED_CUDA_MEMORY", str(plan["peak_bytes"]))
    run_plan = memory.memory_plan((H, W), 81, "bf16", None, memory.device_memory_bytes())
    assert run_plan["new_caption_releases_placed"] and run_plan["vae_parked"]

    def run(prompt, logs):
        args = fields.validate({"prompt": prompt, "seed": 0, "num_frames": 81}, require_image=False)
        args["resolution"] = (H, W)
        return gen.run_generate(image, args, checkpoint_folder=ckpt, device="cuda", depth=depth,
                                report=Progress(bar=False, on_log=logs.append))

    run("a quiet street", [])
    testing.emulated_cuda_reset()
    logs = []
    second = run("a harbour at dusk", logs)
    assert testing.emulated_cuda_stats()["peak_bytes"] <= plan["peak_bytes"]
    released = lambda logs: [e for e in logs if e["message"].startswith("memory plan: 1 new caption(s)")]  # noqa: E731
    assert released(logs) and "given back" in released(logs)[0]["message"]
    ups = [n for d, _, n in testing.emulated_cuda_transfers() if d == "upload"]
    for placed in ("CLIP vision tower weights", "Wan VAE weights"):   # umT5 alone, then the placement
        assert ups.index("umT5 encoder weights") < ups.index(placed), ups
    # the same caption again: cached, nothing given back
    testing.emulated_cuda_reset()
    logs = []
    run("a harbour at dusk", logs)
    assert not released(logs)
    assert not [n for _, _, n in testing.emulated_cuda_transfers() if "weights" in n]
    # a fresh process, the second caption alone
    np.save(tmp_path / "image.npy", image)
    np.save(tmp_path / "depth.npy", depth)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-c", FRESH_RUN, ckpt, str(tmp_path / "image.npy"), str(tmp_path / "depth.npy"),
                    "a harbour at dusk", str(tmp_path / "fresh.npy")], check=True, cwd=root, env=env, timeout=600)
    np.testing.assert_array_equal(second.frames, np.load(tmp_path / "fresh.npy"))


def test_texts_missing_counts_the_captions_a_run_would_encode(ckpt):
    """_core.ar_texts_missing: the distinct captions not in the models' cache for the device and precision (what
    lyra2.generate asks before deciding whether the placed networks may stay beside umT5); bad arguments name the
    field."""
    from lyra2 import _core

    models = gen.load_models(ckpt, "cpu")[0]
    assert _core.ar_texts_missing(models, ["a harbour", "a harbour", "a street"], "cpu", "bf16") == 2
    assert _core.ar_texts_missing(models, [], "cpu", "bf16") == 0
    with pytest.raises(ValueError, match="device"):
        _core.ar_texts_missing(models, ["a"], "tpu", "bf16")
    with pytest.raises(ValueError, match="precision"):
        _core.ar_texts_missing(models, ["a"], "cpu", "fp16")
    with pytest.raises(TypeError, match=r"captions\[1\]"):
        _core.ar_texts_missing(models, ["a", 3], "cpu", "bf16")
