"""The `fal-ai/lyra-2/zoom` input schema: every field's type, default, range and enum, and its validation.

The schema mirrors the hosted endpoint (names, defaults, ranges, enums). Every failure is a ValueError or a
TypeError whose message names the field, the value given and what is allowed.
"""
import math
import numbers
import os
import secrets

APPLICATION = "fal-ai/lyra-2/zoom"
KNOWN_APPLICATIONS = (APPLICATION,)

TRAJECTORIES = ("horizontal_zoom", "horizontal_zoom_bend", "spiral", "dolly_zoom", "orbit_horizontal", "back")
NUM_FRAMES = (81, 161, 241, 321, 401, 481)  # 1 + 80k: each AR chunk adds 80 frames after the anchor frame
RESOLUTIONS = {"480p": (480, 832), "720p": (720, 1280)}
DIRECTIONS = ("in", "out", "both")
# numpy's legacy RandomState takes seeds in [0, 2**32); chunk k of a direction draws with seed + k, and a
# direction has at most 6 chunks (481 frames), so the largest usable seed leaves room for + 5.
MAX_CHUNKS = (NUM_FRAMES[-1] - 1) // 80
SEED_MAX = 2**32 - MAX_CHUNKS

# name -> (kind, default, constraint). kind: "str" | "enum" | "int_enum" | "float" | "int" | "bool" | "seed".
SCHEMA = {
    "image_url": ("str", None, None),
    "prompt": ("str", None, None),
    "zoom_direction": ("enum", "in", DIRECTIONS),
    "num_frames": ("int_enum", 81, NUM_FRAMES),
    "zoom_in_trajectory": ("enum", "orbit_horizontal", TRAJECTORIES),
    "zoom_in_strength": ("float", 0.5, (0.0, 2.0)),
    "zoom_out_trajectory": ("enum", "horizontal_zoom", TRAJECTORIES),
    "zoom_out_strength": ("float", 1.5, (0.0, 3.0)),
    "resolution": ("enum", "480p", tuple(RESOLUTIONS)),
    "use_dmd": ("bool", True, None),
    "guidance_scale": ("float", 5.0, (1.0, 15.0)),
    "num_inference_steps": ("int", 28, (1, 100)),
    "frames_per_second": ("int", 16, (8, 24)),
    "seed": ("seed", None, (0, SEED_MAX)),
}
REQUIRED = ("image_url", "prompt")


def output_size(resolution):
    """(H, W) of a validated `resolution`: "480p" / "720p", or an (H, W) pair (tests and custom sizes)."""
    if isinstance(resolution, str):
        return RESOLUTIONS[resolution]
    return int(resolution[0]), int(resolution[1])


def _type_name(value):
    return type(value).__name__


def _check_enum(name, value, allowed):
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a string, one of {list(allowed)}; got {value!r} ({_type_name(value)})")
    if value not in allowed:
        raise ValueError(f"{name}: {value!r} is not allowed; expected one of {list(allowed)}")
    return value


def _check_int_enum(name, value, allowed):
    # The endpoint's schema shows the enum as numbers; its docs also quote them as strings ("81"): accept both.
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer, one of {list(allowed)}; got {value!r} ({_type_name(value)})")
    if int(value) not in allowed:
        raise ValueError(f"{name}: {value!r} is not allowed; expected one of {list(allowed)} (1 + 80k frames)")
    return int(value)


def _check_float(name, value, bounds):
    lo, hi = bounds
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a number in [{lo:g}, {hi:g}]; got {value!r} ({_type_name(value)})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}: {value!r} is not a finite number; expected a number in [{lo:g}, {hi:g}]")
    if not lo <= value <= hi:
        raise ValueError(f"{name}: {value!r} is out of range; expected a number in [{lo:g}, {hi:g}]")
    return value


def _check_int(name, value, bounds):
    lo, hi = bounds
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        # 28.0 is not silently accepted: the endpoint's schema says integer.
        raise TypeError(f"{name}: expected an integer in [{lo}, {hi}]; got {value!r} ({_type_name(value)})")
    value = int(value)
    if not lo <= value <= hi:
        raise ValueError(f"{name}: {value!r} is out of range; expected an integer in [{lo}, {hi}]")
    return value


def _check_str(name, value):
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a string; got {value!r} ({_type_name(value)})")
    if not value.strip():
        raise ValueError(f"{name}: must not be empty")
    if "\x00" in value:
        raise ValueError(f"{name}: must not contain NUL characters")
    return value


def check_field(name, value):
    """Validates one field and returns its normalised value (None stays None only for `seed`)."""
    if name not in SCHEMA:
        raise ValueError(f"unknown field {name!r}; the allowed fields are {sorted(SCHEMA)}")
    kind, _, constraint = SCHEMA[name]
    if kind == "str":
        return _check_str(name, value)
    if kind == "enum":
        return _check_enum(name, value, constraint)
    if kind == "int_enum":
        return _check_int_enum(name, value, constraint)
    if kind == "float":
        return _check_float(name, value, constraint)
    if kind == "int":
        return _check_int(name, value, constraint)
    if kind == "bool":
        if not isinstance(value, bool):
            raise TypeError(f"{name}: expected true or false (a bool); got {value!r} ({_type_name(value)})")
        return value
    if kind == "seed":
        if value is None:
            return None
        return _check_int(name, value, constraint)
    raise AssertionError(kind)


def validate(arguments, *, require_image=True):
    """Returns the complete, normalised argument dict (defaults filled in, a random seed chosen when absent).

    `arguments` is the fal-style input mapping. With require_image=False, `image_url` may be absent (lyra2.zoom
    passes the image separately)."""
    if not isinstance(arguments, dict):
        raise TypeError(f"arguments: expected a dict of the endpoint's fields; got {_type_name(arguments)}")
    for key in arguments:
        if not isinstance(key, str):
            raise TypeError(f"arguments: field names must be strings; got {key!r}")
        if key not in SCHEMA:
            raise ValueError(f"unknown field {key!r}; the allowed fields are {sorted(SCHEMA)}")
    for name in REQUIRED:
        if name == "image_url" and not require_image:
            continue
        if name not in arguments or arguments[name] is None:
            raise ValueError(f"{name}: this field is required")
    out = {}
    for name, (_, default, _) in SCHEMA.items():
        if name == "image_url" and not require_image and name not in arguments:
            continue
        value = arguments.get(name, default)
        if value is None and name not in REQUIRED:
            out[name] = None if name == "seed" else default
            continue
        out[name] = check_field(name, value)
    out["seed_was_given"] = out["seed"] is not None
    if out["seed"] is None:
        out["seed"] = secrets.randbelow(2**31)
    return out


# ---------------------------------------------------------------- lyra2-only options (not endpoint fields)

DEVICES = ("auto", "cpu", "cuda")
MODES = ("auto", "preview", "generate")


def check_options(device, mode, output_path, progress):
    """The lyra2-only options of lyra2.zoom and lyra2.generate (not endpoint fields): device, mode, output_path
    (an .mp4 in an existing folder, or None) and progress (a bool)."""
    if not isinstance(device, str) or device not in DEVICES:
        raise ValueError(f"device: {device!r} is not allowed; expected one of {list(DEVICES)}")
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"mode: {mode!r} is not allowed; expected one of {list(MODES)}")
    if output_path is not None:
        if not isinstance(output_path, (str, os.PathLike)):
            raise TypeError(f"output_path: expected a path; got {output_path!r}")
        if not os.fspath(output_path).lower().endswith(".mp4"):
            raise ValueError(f"output_path: {os.fspath(output_path)!r} must end in .mp4")
        parent = os.path.dirname(os.path.abspath(os.fspath(output_path)))
        if not os.path.isdir(parent):
            raise ValueError(f"output_path: the folder {parent!r} does not exist")
    if not isinstance(progress, bool):
        raise TypeError(f"progress: expected a bool; got {progress!r}")
