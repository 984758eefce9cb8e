"""Image input and MP4 output: ``read_image`` and ``write_video``.

Decoding, resizing and encoding run in C on libavcodec/libavformat/libswscale (``csrc/io``); this
module resolves where an image comes from (URL, data URI, path, bytes, array) and validates
arguments. Behaviour, and how it relates to upstream Lyra 2 (which reads with ``cv2.imread`` and
resizes with ``cv2.resize(..., INTER_LINEAR)``, upstream Z:602-607, Z:67, Z:171):

* Formats: whatever libavformat recognises as a still image from its bytes (PNG, JPEG, WebP, BMP,
  TIFF, GIF/APNG first frame, ...). Images over ``IMAGE_MAX_PIXELS`` (100 MP) are refused.
* EXIF orientation is applied where libavcodec exposes it (JPEG, WebP), as ``cv2.imread`` does for
  JPEG. An eXIf chunk in a PNG is not seen by this libavcodec (cv2 would apply it).
* Alpha is composited over **white**: ``round((c*a + 255*(255-a)) / 255)``. cv2.imread would drop
  alpha and keep the colour under it.
* JPEG chroma is interpolated like libjpeg's fancy upsampling; measured against cv2.imread the RGB
  differs by at most a few LSB (the IDCTs differ), not bit-exact.
* ``resolution`` resizes with the same arithmetic as ``cv2.resize(INTER_LINEAR)`` on uint8, bit for
  bit: bilinear, half-pixel centres, no antialiasing, no crop, aspect ratio not kept.
"""
from __future__ import annotations

import base64
import binascii
import http.client
import numbers
import os
import urllib.error
import urllib.parse
import urllib.request

import numpy as np

from . import _core
from ._core import Lyra2Error
from .fields import RESOLUTIONS  # fal's resolution names -> (H, W), defined once with the other fields

__all__ = ["read_image", "write_video", "load_image_bytes", "RESOLUTIONS", "IMAGE_MAX_PIXELS",
           "MAX_IMAGE_BYTES", "URL_TIMEOUT_S"]

#: Decoded images above this many pixels are refused (lyra2.Lyra2Error).
IMAGE_MAX_PIXELS = _core.IMAGE_MAX_PIXELS
#: Encoded image files/downloads above this many bytes are refused (lyra2.Lyra2Error).
MAX_IMAGE_BYTES = 64 * 1024 * 1024
#: Timeout of an http(s) image fetch, seconds (connect, and each read).
URL_TIMEOUT_S = 30.0
#: Largest target side accepted by ``resolution=(H, W)``.
MAX_SIDE = 8192

_USER_AGENT = "lyra2-read_image (+urllib)"


def _describe(source) -> str:
    text = repr(source)
    return text if len(text) <= 80 else text[:77] + "..."


def _fetch_url(url: str, timeout: float, max_bytes: int) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > max_bytes:
                raise Lyra2Error(f"image URL {url}: the server announces {int(length)} bytes; "
                                 f"images over {max_bytes} bytes are refused")
            chunks, total = [], 0
            while True:
                chunk = response.read(min(1 << 20, max_bytes + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
                if total > max_bytes:
                    raise Lyra2Error(f"image URL {url}: the response is over {max_bytes} bytes; "
                                     "larger images are refused")
            return b"".join(chunks)
    except urllib.error.HTTPError as e:
        raise Lyra2Error(f"image URL {url}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise Lyra2Error(f"image URL {url}: cannot fetch ({e.reason})") from None
    except (TimeoutError, OSError, ValueError, http.client.HTTPException) as e:
        raise Lyra2Error(f"image URL {url}: cannot fetch ({e})") from None


def _parse_data_uri(uri: str) -> bytes:
    header, sep, payload = uri[5:].partition(",")
    if not sep:
        raise ValueError(f"image: data URI has no ',' before its data: {_describe(uri)}")
    if header.lower().endswith(";base64"):
        raw = urllib.parse.unquote_to_bytes(payload)
        raw = b"".join(raw.split())  # line breaks and spaces are common in pasted base64
        try:
            return base64.b64decode(raw + b"=" * (-len(raw) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"image: data URI has invalid base64 data: {_describe(uri)}") from None
    return urllib.parse.unquote_to_bytes(payload)


def _read_file(path: str, max_bytes: int) -> bytes:
    if ("\0" if isinstance(path, str) else b"\0") in path:
        raise ValueError(f"image source: the path {_describe(path)} contains a NUL character, which no file name "
                         "can hold")
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                raise Lyra2Error(f"image file {path}: {size} bytes; images over {max_bytes} bytes are refused")
            return f.read(max_bytes + 1)
    except IsADirectoryError:
        raise Lyra2Error(f"image file {path}: is a directory") from None
    except OSError as e:
        raise Lyra2Error(f"image file {path}: cannot read ({e.strerror or e})") from None


def _file_url_path(url: str) -> str:
    parsed = urllib.parse.urlparse(url)
    if parsed.netloc not in ("", "localhost"):
        raise ValueError(f"image: file:// URL must name a local file (host '' or 'localhost'), got "
                         f"host {parsed.netloc!r} in {_describe(url)}")
    return urllib.request.url2pathname(urllib.parse.unquote(parsed.path))


def load_image_bytes(source, *, timeout: float | None = None, max_bytes: int | None = None):
    """Resolves an image source to its encoded bytes, or to a uint8 array when it is one already.

    source: http(s) URL, ``file://`` URL, ``data:`` URI (base64 or percent-encoded), local path
    (str or os.PathLike), bytes / bytearray / memoryview, or a numpy uint8 array (returned as is).
    Network and file failures raise lyra2.Lyra2Error; a malformed source raises ValueError/TypeError.
    """
    timeout = URL_TIMEOUT_S if timeout is None else float(timeout)
    max_bytes = MAX_IMAGE_BYTES if max_bytes is None else int(max_bytes)
    if isinstance(source, np.ndarray):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise ValueError("image: the bytes are empty")
        return data
    if isinstance(source, os.PathLike):
        return _read_file(os.fspath(source), max_bytes)
    if not isinstance(source, str):
        raise TypeError("image: expected a URL, data URI, path, bytes or a uint8 numpy array, got "
                        f"{type(source).__name__}")
    if not source:
        raise ValueError("image: the source string is empty (expected a URL, data URI or path)")
    scheme = source.split(":", 1)[0].lower() if ":" in source else ""
    if scheme in ("http", "https"):
        return _fetch_url(source, timeout, max_bytes)
    if scheme == "data":
        return _parse_data_uri(source)
    if scheme == "file":
        return _read_file(_file_url_path(source), max_bytes)
    if "://" in source:
        raise ValueError(f"image: unsupported URL scheme {scheme!r} in {_describe(source)} "
                         "(allowed: http, https, file, data, or a local path)")
    return _read_file(source, max_bytes)


def _check_resolution(resolution):
    if resolution is None:
        return None
    if isinstance(resolution, str):
        if resolution not in RESOLUTIONS:
            raise ValueError(f"resolution: {resolution!r} is not one of {sorted(RESOLUTIONS)} "
                             "(or pass an (H, W) tuple, or None for no resize)")
        return RESOLUTIONS[resolution]
    if isinstance(resolution, (tuple, list)) and len(resolution) == 2:
        h, w = resolution
        for name, v in (("height", h), ("width", w)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise TypeError(f"resolution: {name} must be an int, got {v!r}")
            if not 1 <= int(v) <= MAX_SIDE:
                raise ValueError(f"resolution: {name} must be in 1..{MAX_SIDE}, got {int(v)}")
        return int(h), int(w)
    raise TypeError(f"resolution: expected None, '480p', '720p' or an (H, W) tuple of ints, got {resolution!r}")


def _image_from_array(a: np.ndarray) -> np.ndarray:
    if a.dtype != np.uint8:
        raise TypeError(f"image: array must have dtype uint8, got {a.dtype}")
    if a.ndim != 3 or a.shape[2] not in (3, 4) or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"image: array must have shape (H, W, 3) or (H, W, 4), got {a.shape}")
    if a.shape[0] * a.shape[1] > IMAGE_MAX_PIXELS:
        raise ValueError(f"image: {a.shape[0]}x{a.shape[1]} is over {IMAGE_MAX_PIXELS} pixels")
    if a.shape[2] == 4:
        return _core.image_flatten_alpha(np.ascontiguousarray(a))
    return np.array(a, dtype=np.uint8, order="C", copy=True)


def read_image(source, resolution=None) -> np.ndarray:
    """Reads an image as uint8 RGB (H, W, 3).

    source: http(s) URL, ``file://`` URL, ``data:`` URI, local path (str or pathlib.Path),
    bytes / bytearray / memoryview of an encoded image, or a uint8 array (H, W, 3) / (H, W, 4)
    (alpha composited over white). resolution: None (keep the size), "480p" (480x832),
    "720p" (720x1280) or an (H, W) tuple; resized like upstream (cv2 INTER_LINEAR, no crop).
    """
    target = _check_resolution(resolution)
    data = load_image_bytes(source)
    if isinstance(data, np.ndarray):
        image = _image_from_array(data)
    else:
        image = _core.image_decode(data)
    if target is not None and image.shape[:2] != target:
        image = _core.image_resize(image, target[0], target[1])
    return image


VIDEO_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


# x264 preset of every MP4 lyra2 writes: "fast" encodes in 0.75x the time of upstream's "medium" at the same crf with
# the same size and 0.11 dB less PSNR on a 480p preview (benchmarks/x264_presets.py, benchmarks/RESULTS.md); the
# presets faster than it lose 0.4-2 dB or grow the file 1.5-4.5x.
DEFAULT_PRESET = "fast"


def write_video(frames, path, fps: int = 16, crf: int = 25, preset: str = DEFAULT_PRESET):
    """Writes uint8 RGB frames (T, H, W, 3) as an H.264 (yuv420p) MP4 and returns ``path``.

    H and W must be even; fps an int in 8..24; crf an int in 0..51 (lower is better, upstream 25); preset one of
    x264's speed presets (``VIDEO_PRESETS``; default ``DEFAULT_PRESET`` = "fast", see its comment; upstream writes
    "medium").
    The file appears complete or not at all (written beside it under a temporary name, then renamed).
    """
    if isinstance(fps, bool) or not isinstance(fps, numbers.Integral):
        raise TypeError(f"fps: must be an int in {_core.VIDEO_FPS_MIN}..{_core.VIDEO_FPS_MAX}, got {fps!r}")
    if not _core.VIDEO_FPS_MIN <= fps <= _core.VIDEO_FPS_MAX:
        raise ValueError(f"fps: must be in {_core.VIDEO_FPS_MIN}..{_core.VIDEO_FPS_MAX}, got {fps}")
    if isinstance(crf, bool) or not isinstance(crf, numbers.Integral):
        raise TypeError(f"crf: must be an int in 0..51, got {crf!r}")
    if not 0 <= crf <= 51:
        raise ValueError(f"crf: must be in 0..51, got {crf}")
    if not isinstance(preset, str) or preset not in VIDEO_PRESETS:
        raise ValueError(f"preset: {preset!r} is not allowed; expected one of {list(VIDEO_PRESETS)}")
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"path: expected a str or os.PathLike, got {type(path).__name__}")
    if isinstance(frames, (list, tuple)):
        if not frames or not all(isinstance(f, np.ndarray) for f in frames):
            raise TypeError("frames: expected a uint8 array (T, H, W, 3) or a non-empty list of (H, W, 3) arrays")
        if len({(f.shape, f.dtype) for f in frames}) != 1:
            raise ValueError("frames: all frames must have the same shape and dtype")
        frames = np.stack(frames)
    if not isinstance(frames, np.ndarray):
        raise TypeError(f"frames: expected a numpy uint8 array (T, H, W, 3), got {type(frames).__name__}")
    if frames.dtype != np.uint8:
        raise TypeError(f"frames: dtype must be uint8, got {frames.dtype} (convert with "
                        "np.clip(x * 255, 0, 255).astype(np.uint8) for [0, 1] floats)")
    if frames.ndim != 4 or frames.shape[3] != 3:
        raise ValueError(f"frames: shape must be (T, H, W, 3), got {frames.shape}")
    t, h, w = frames.shape[:3]
    if t < 1:
        raise ValueError("frames: need at least one frame, got T=0")
    if h % 2 or w % 2 or h < 2 or w < 2 or h > _core.VIDEO_MAX_SIDE or w > _core.VIDEO_MAX_SIDE:
        raise ValueError(f"frames: height and width must be even and in 2..{_core.VIDEO_MAX_SIDE} "
                         f"(H.264 yuv420p), got {h}x{w}")
    _core.video_write(frames, path, int(fps), int(crf), preset)
    return path
