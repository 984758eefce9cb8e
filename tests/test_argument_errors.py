"""Bad arguments raise TypeError/ValueError naming the argument (not a builtin message such as "embedded null
byte", an OverflowError from the C argument parser, or a silent int() truncation)."""
import numpy as np
import pytest

from lyra2 import media, sampling
from lyra2.warp import forward_warp


@pytest.mark.parametrize("source", ["\0", "a\0b.png", "file:///tmp/a%00b.png"])
def test_read_image_nul_in_path_names_source(source):
    with pytest.raises(ValueError, match="image source: .*NUL character"):
        media.read_image(source)


def _tiny_warp_case():
    H, W = 4, 5
    image = np.zeros((3, H, W), np.float32)
    depth = np.ones((H, W), np.float32)
    K = np.array([[5.0, 0, 2.5], [0, 5.0, 2.0], [0, 0, 1]], np.float32)
    eye = np.eye(4, dtype=np.float32)
    return image, depth, eye, K, eye[None], K[None]


@pytest.mark.parametrize("bad, exc", [(2**40, ValueError), (2**31, ValueError), (-1, ValueError), (1.5, ValueError),
                                      (True, ValueError)])
def test_forward_warp_norm_batch_bounded(bad, exc):
    with pytest.raises(exc, match="norm_batch"):
        forward_warp(*_tiny_warp_case(), norm_batch=bad)


def test_forward_warp_norm_batch_large_valid_value_runs():
    # The largest accepted value behaves as one batch holding every target (here 1).
    a = forward_warp(*_tiny_warp_case(), norm_batch=2**31 - 1)
    b = forward_warp(*_tiny_warp_case())
    np.testing.assert_array_equal(a["image"], b["image"])


@pytest.mark.parametrize("call, exc, word", [
    (lambda: sampling.flow_timesteps(2.9), ValueError, "num_steps"),
    (lambda: sampling.flow_timesteps(None), TypeError, "num_steps"),
    (lambda: sampling.flow_timesteps(True), TypeError, "num_steps"),
    (lambda: sampling.flow_timesteps("10"), TypeError, "num_steps"),
    (lambda: sampling.flow_timesteps(2**40), ValueError, "num_steps"),
    (lambda: sampling.flow_timesteps(10, None), TypeError, "shift"),
    (lambda: sampling.flow_timesteps(10, "5"), TypeError, "shift"),
    (lambda: sampling.unipc_coefficients(3.5), ValueError, "num_steps"),
    (lambda: sampling.unipc_coefficients(10, None), TypeError, "shift"),
    (lambda: sampling.cfg(np.zeros(2, np.float32), np.zeros(2, np.float32), None), TypeError, "g"),
    (lambda: sampling.cfg(np.zeros(2, np.float32), np.zeros(2, np.float32), False), TypeError, "g"),
    (lambda: sampling.unipc_sample(None, np.zeros((1, 2, 1, 2, 2), np.float32), 0, 2.5), ValueError, "num_steps"),
    (lambda: sampling.unipc_sample(None, np.zeros((1, 2, 1, 2, 2), np.float32), 0, 2, num_new=None), TypeError,
     "num_new"),
    (lambda: sampling.unipc_sample(None, np.zeros((1, 2, 1, 2, 2), np.float32), 0, 2, uncond=None, guidance="5"),
     TypeError, "guidance"),
    (lambda: sampling.dmd_sample(None, np.zeros((1, 2, 1, 2, 2), np.float32), 0, num_new=4.2), ValueError,
     "num_new"),
])
def test_sampling_arguments_are_validated_by_name(call, exc, word):
    with pytest.raises(exc) as info:
        call()
    assert str(info.value).startswith(word + ":"), str(info.value)


def test_sampling_integral_floats_still_accepted():
    # 3.0 is a whole number: same grid as 3 (the old int() coercion kept this working).
    a, b = sampling.flow_timesteps(3.0), sampling.flow_timesteps(np.int64(3))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert len(a[0]) == 3



def test_glue_messages_name_the_dimension_count_and_dtype():
    from lyra2 import _core
    # py_media: one allowed dimension count reads "expected 3 dimensions", not "expected 3 to 3".
    with pytest.raises(ValueError, match=r"^image: expected 3 dimensions, got 2$"):
        _core.image_flatten_alpha(np.zeros((2, 2), np.uint8))
    # py_common lyra_py_array: the wanted dtype by name for every dtype, not "the required dtype".
    with pytest.raises(TypeError, match=r"^rel: expected an array convertible to int64$"):
        _core.umt5_bucket(object(), 32, 128)


def test_resolutions_defined_once():
    from lyra2 import fields
    assert media.RESOLUTIONS is fields.RESOLUTIONS
