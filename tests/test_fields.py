"""Validation of the endpoint's fields: every bad input is a ValueError/TypeError naming the field."""
import math

import numpy as np
import pytest

import lyra2
from lyra2.fields import SCHEMA, validate

GOOD = {"image_url": "file:///nonexistent.png", "prompt": "a harbour"}

# (field, bad value, exception type): at least 40 distinct bad inputs across the fields.
BAD = [
    ("prompt", "", ValueError),
    ("prompt", "   \n\t", ValueError),
    ("prompt", 5, TypeError),
    ("prompt", b"bytes", TypeError),
    ("prompt", "a\x00b", ValueError),
    ("image_url", "", ValueError),
    ("image_url", 3.5, TypeError),
    ("image_url", ["x"], TypeError),
    ("zoom_direction", "sideways", ValueError),
    ("zoom_direction", "IN", ValueError),
    ("zoom_direction", 1, TypeError),
    ("num_frames", 80, ValueError),
    ("num_frames", 82, ValueError),
    ("num_frames", 0, ValueError),
    ("num_frames", -81, ValueError),
    ("num_frames", 561, ValueError),
    ("num_frames", 81.0, TypeError),
    ("num_frames", True, TypeError),
    ("num_frames", "eighty", TypeError),
    ("num_frames", [81], TypeError),
    ("zoom_in_trajectory", "orbit", ValueError),
    ("zoom_in_trajectory", "", ValueError),
    ("zoom_in_trajectory", ["spiral"], TypeError),
    ("zoom_in_strength", -0.1, ValueError),
    ("zoom_in_strength", 2.0001, ValueError),
    ("zoom_in_strength", float("nan"), ValueError),
    ("zoom_in_strength", float("inf"), ValueError),
    ("zoom_in_strength", True, TypeError),
    ("zoom_in_strength", "0.5", TypeError),
    ("zoom_out_trajectory", "zoom", ValueError),
    ("zoom_out_strength", 3.5, ValueError),
    ("zoom_out_strength", -math.inf, ValueError),
    ("zoom_out_strength", [1.0], TypeError),
    ("resolution", "1080p", ValueError),
    ("resolution", "480", ValueError),
    ("resolution", 480, TypeError),
    ("use_dmd", 1, TypeError),
    ("use_dmd", "true", TypeError),
    ("use_dmd", 0.0, TypeError),
    ("guidance_scale", 0.5, ValueError),
    ("guidance_scale", 15.5, ValueError),
    ("guidance_scale", float("nan"), ValueError),
    ("guidance_scale", False, TypeError),
    ("num_inference_steps", 0, ValueError),
    ("num_inference_steps", 101, ValueError),
    ("num_inference_steps", 28.0, TypeError),
    ("num_inference_steps", True, TypeError),
    ("frames_per_second", 7, ValueError),
    ("frames_per_second", 25, ValueError),
    ("frames_per_second", 16.5, TypeError),
    ("seed", -1, ValueError),
    ("seed", 2**32, ValueError),
    ("seed", 1.5, TypeError),
    ("seed", True, TypeError),
    ("seed", "42", TypeError),
]


@pytest.mark.parametrize("field,value,exc", BAD, ids=[f"{f}={v!r}" for f, v, _ in BAD])
def test_bad_field(field, value, exc):
    args = dict(GOOD, **{field: value})
    with pytest.raises(exc) as info:
        validate(args)
    assert field in str(info.value)


def test_at_least_forty_bad_inputs():
    assert len({(f, repr(v)) for f, v, _ in BAD}) >= 40


def test_defaults_filled():
    out = validate(dict(GOOD))
    for name, (_, default, _) in SCHEMA.items():
        if name in ("image_url", "prompt", "seed"):
            continue
        assert out[name] == default, name
    assert 0 <= out["seed"] < 2**31 and out["seed_was_given"] is False


def test_numbers_normalised():
    out = validate(dict(GOOD, num_frames="161", zoom_in_strength=1, guidance_scale=np.float32(7.5),
                        num_inference_steps=np.int64(10), seed=np.uint32(7)))
    assert out["num_frames"] == 161 and isinstance(out["zoom_in_strength"], float)
    assert out["guidance_scale"] == 7.5 and out["num_inference_steps"] == 10 and out["seed"] == 7


def test_missing_required_and_unknown():
    with pytest.raises(ValueError, match="prompt"):
        validate({"image_url": "x.png"})
    with pytest.raises(ValueError, match="image_url"):
        validate({"prompt": "x"})
    with pytest.raises(ValueError, match="zoom_strength"):
        validate(dict(GOOD, zoom_strength=1.0))
    with pytest.raises(TypeError, match="arguments"):
        validate([("prompt", "x")])


def test_subscribe_validates_application_and_options():
    with pytest.raises(ValueError, match="fal-ai/lyra-2/zoom"):
        lyra2.subscribe("fal-ai/flux/dev", GOOD)
    with pytest.raises(TypeError, match="on_queue_update"):
        lyra2.subscribe("fal-ai/lyra-2/zoom", GOOD, on_queue_update=5)
    with pytest.raises(TypeError, match="with_logs"):
        lyra2.subscribe("fal-ai/lyra-2/zoom", GOOD, with_logs="yes")
    with pytest.raises(TypeError, match="turbo"):
        lyra2.subscribe("fal-ai/lyra-2/zoom", GOOD, turbo=True)
    with pytest.raises(ValueError, match="num_frames"):
        lyra2.run("fal-ai/lyra-2/zoom", dict(GOOD, num_frames=100))


def test_zoom_validates_options():
    img = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="device"):
        lyra2.zoom(img, "x", device="tpu")
    with pytest.raises(ValueError, match="mode"):
        lyra2.zoom(img, "x", mode="fast")
    with pytest.raises(ValueError, match="output_path"):
        lyra2.zoom(img, "x", output_path="out.avi")
    with pytest.raises(ValueError, match="checkpoint_dir"):
        lyra2.zoom(img, "x", checkpoint_dir="/nonexistent/folder")
    with pytest.raises(ValueError, match="image"):
        lyra2.zoom(None, "x")
    with pytest.raises(ValueError, match="prompt"):
        lyra2.zoom(img, "")
    with pytest.raises(lyra2.Lyra2Error, match="checkpoint"):
        lyra2.zoom(img, "x", mode="generate")
