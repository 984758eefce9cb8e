"""The memory plan against a whole generate run: the tiny checkpoint's run on the emulated device
(LYRA2_EMULATED_CUDA=1: every device allocation is a block of its pool, whose high-water mark it counts) must stay
within the plan lyra2.memory computes for the same networks, frame size and frame count
(lyra2.memory._plan over lyra2.testing.run_networks), and the plan must not overstate it by much.

Tolerance: the plan's byte terms are the allocations themselves (the DiT's measured forward, the networks' cost
models, the VAE's dry walk, the driver's buffers), so the run's peak equals the plan's largest stage to within
the allocator's rounding, which the plan covers with a fixed allowance (memory.ALLOC_ROUNDING, 128 KiB: each pool
block rounded up to 256 bytes, each weight tensor aligned to 64 bytes; measured here: a few KiB). So
plan >= peak, and plan - peak <= ALLOC_ROUNDING + 1 % of the peak (the cost models of umT5 and CLIP bound their
measured arenas from above; umT5's stage is not the peak)."""
import importlib

import pytest

from lyra2 import fields, memory, testing
from lyra2.progress import Progress

from tiny_generate import H, W, ckpt, depth, image  # noqa: F401 (fixtures)

gen = importlib.import_module("lyra2.generate")


@pytest.fixture
def emulated(monkeypatch):
    monkeypatch.setenv("LYRA2_EMULATED_CUDA", "1")
    gen.release_models()   # nothing placed before the run: the pool holds only what the run allocates
    yield
    gen.release_models()


@pytest.mark.parametrize("case", [dict(num_frames=161), dict(num_frames=81),
                                  dict(num_frames=161, use_dmd=False, num_inference_steps=1, guidance_scale=5.0)],
                         ids=["dmd-161", "dmd-81", "cfg-161"])
def test_whole_run_peak_is_within_the_plan(ckpt, image, depth, emulated, case):
    net = testing.run_networks(ckpt)
    gen.release_models()
    plan = memory._plan(net, H, W, case["num_frames"], "bf16", None, "tiny", first_frame_depth=False)
    testing.emulated_cuda_reset()
    assert testing.emulated_cuda_stats()["live_bytes"] == 0
    args = fields.validate({"prompt": "a quiet street", "seed": 0, **case}, require_image=False)
    args["resolution"] = (H, W)
    gen.run_generate(image, args, checkpoint_folder=ckpt, device="cuda", depth=depth,
                     report=Progress(bar=False, on_log=None))
    peak = testing.emulated_cuda_stats()["peak_bytes"]
    worst = max(plan["stage_peaks"], key=plan["stage_peaks"].get)
    print(f"{case}: emulated pool peak {peak} bytes, plan {plan['peak_bytes']} ({worst}), "
          f"plan - peak = {plan['peak_bytes'] - peak}")
    assert plan["peak_bytes"] >= peak
    assert plan["peak_bytes"] - peak <= memory.ALLOC_ROUNDING + 0.01 * peak
    # the peak is a chunk-loop stage (the DiT's forward here), not the text stage
    assert worst == "dit"


def test_whole_run_with_da3_per_call_is_within_the_plan(ckpt, image, depth, emulated):
    """Under a budget whose plan loads DA3 for each depth call (11.65 GB at this frame size, as in
    test_generate_device), DA3's weights, arena and pixels are on the device in the depth update only: the peak is
    the plan's with DA3 not resident, to the same tolerance."""
    import lyra2

    budget = 11.65
    assert not lyra2.memory_plan((H, W), 161, "bf16", budget)["da3_resident"]
    net = testing.run_networks(ckpt)
    gen.release_models()
    c = memory._costs(net, H, W, 161, "bf16")
    stages = memory._stages(c, c["layers"], False, False)   # the tiny DiT's 2 blocks stay resident
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
