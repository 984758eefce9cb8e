"""Media I/O: image decode (csrc/io/image_decode.c), resize (image_resize.c), MP4 writing
(video_encode.c) and the sources of lyra2.media.read_image.

Test images are made here with the ffmpeg CLI (Debian's ffmpeg) from arrays we know; MP4s are
read back with ffprobe/ffmpeg. Pillow and OpenCV are optional cross-checks (skipped when absent).
"""
import base64
import http.server
import os
import pathlib
import shutil
import struct
import subprocess
import threading
import urllib.parse
import zlib

import numpy as np
import pytest

import lyra2
from lyra2 import _core
from lyra2 import media

FFMPEG = shutil.which("ffmpeg")
FFPROBE = shutil.which("ffprobe")
needs_ffmpeg = pytest.mark.skipif(not (FFMPEG and FFPROBE), reason="ffmpeg/ffprobe CLI not installed")


# ---------------------------------------------------------------- helpers

def smooth_image(h, w, seed=0, channels=3):
    """Band-limited content (sums of low-frequency sinusoids): what lossy codecs keep well."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    out = []
    for _ in range(channels):
        v = np.full((h, w), 128.0)
        for _ in range(3):
            fy, fx, ph = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0), rng.uniform(0, 2 * np.pi)
            v += 40 * np.sin(2 * np.pi * (fy * y / h + fx * x / w) + ph)
        out.append(v)
    return np.clip(np.stack(out, -1), 0, 255).round().astype(np.uint8)


def ffmpeg_encode(tmp_path, image, name, *args):
    """Encodes a uint8 (H, W, 3|4) array with the ffmpeg CLI; returns the file's bytes."""
    h, w, c = image.shape
    out = tmp_path / name
    cmd = [FFMPEG, "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24" if c == 3 else "rgba",
           "-s", f"{w}x{h}", "-i", "-", "-frames:v", "1", *args, str(out)]
    subprocess.run(cmd, input=np.ascontiguousarray(image).tobytes(), check=True)
    return out.read_bytes()


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def png_bytes(rows, bit_depth, color_type, width, height):
    """A minimal PNG written by hand (independent of the decoder under test)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    raw = b"".join(b"\x00" + r for r in rows)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def over_white(rgba):
    """Reference for alpha over white: round((c*a + 255*(255-a)) / 255) in integers."""
    c = rgba[..., :3].astype(np.int64)
    a = rgba[..., 3:].astype(np.int64)
    return ((c * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)


# ---------------------------------------------------------------- decode

@needs_ffmpeg
def test_decode_png_and_lossless_webp_exact(tmp_path):
    img = np.random.default_rng(1).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    assert np.array_equal(_core.image_decode(ffmpeg_encode(tmp_path, img, "a.png")), img)
    webp = ffmpeg_encode(tmp_path, img, "a.webp", "-c:v", "libwebp", "-lossless", "1")
    assert np.array_equal(_core.image_decode(webp), img)


@needs_ffmpeg
@pytest.mark.parametrize("pix_fmt", ["yuvj420p", "yuvj422p", "yuvj444p"])
def test_decode_jpeg(tmp_path, pix_fmt):
    img = smooth_image(96, 128, seed=2)
    data = ffmpeg_encode(tmp_path, img, "a.jpg", "-c:v", "mjpeg", "-q:v", "2", "-pix_fmt", pix_fmt)
    out = _core.image_decode(data)
    assert out.shape == img.shape and out.dtype == np.uint8
    # q2 on smooth content: the codec error alone is far below this bound
    assert psnr(out, img) > 38
    PIL = pytest.importorskip("PIL.Image")
    import io
    ref = np.asarray(PIL.open(io.BytesIO(data)).convert("RGB"))
    # libjpeg (Pillow, and cv2.imread upstream) vs libavcodec: the same chroma interpolation, different
    # IDCTs and YCbCr->RGB rounding; measured max 3 LSB, mean < 0.1 LSB
    diff = np.abs(out.astype(int) - ref)
    assert diff.max() <= 4 and diff.mean() < 0.2, (diff.max(), diff.mean())


@needs_ffmpeg
def test_decode_lossy_webp(tmp_path):
    img = smooth_image(64, 80, seed=3)
    data = ffmpeg_encode(tmp_path, img, "a.webp", "-c:v", "libwebp", "-quality", "95")
    assert psnr(_core.image_decode(data), img) > 35


@needs_ffmpeg
def test_alpha_over_white(tmp_path):
    rng = np.random.default_rng(4)
    rgba = rng.integers(0, 256, (21, 34, 4), dtype=np.uint8)
    rgba[0, :, 3] = 0    # fully transparent row: white whatever the colour
    rgba[1, :, 3] = 255  # opaque row: the colour
    expect = over_white(rgba)
    assert np.array_equal(expect[0], np.full((34, 3), 255, np.uint8))
    assert np.array_equal(expect[1], rgba[1, :, :3])
    png = ffmpeg_encode(tmp_path, rgba, "a.png", "-pix_fmt", "rgba")
    assert np.array_equal(_core.image_decode(png), expect)
    webp = ffmpeg_encode(tmp_path, rgba, "a.webp", "-c:v", "libwebp", "-lossless", "1")
    assert np.array_equal(_core.image_decode(webp), expect)
    # the array path composites the same way
    assert np.array_equal(media.read_image(rgba), expect)


def test_hand_written_png_gray_and_16bit():
    gray = np.arange(5 * 7, dtype=np.uint8).reshape(5, 7) * 7
    out = _core.image_decode(png_bytes([r.tobytes() for r in gray], 8, 0, 7, 5))
    assert np.array_equal(out, np.repeat(gray[..., None], 3, -1))
    rgb16 = np.random.default_rng(5).integers(0, 65536, (4, 6, 3), dtype=np.uint16)
    out = _core.image_decode(png_bytes([r.astype(">u2").tobytes() for r in rgb16], 16, 2, 6, 4))
    # 16 -> 8 bit: v / 257 rounded; swscale's fixed-point path may land one LSB off
    assert np.abs(out.astype(int) - np.round(rgb16 / 257.0)).max() <= 1


def exif_jpeg(jpeg, orientation, little_endian):
    """Inserts an APP1 Exif segment holding only IFD0 Orientation after the SOI marker."""
    e = "<" if little_endian else ">"
    tiff = (b"II*\x00" if little_endian else b"MM\x00*") + struct.pack(e + "I", 8)
    tiff += struct.pack(e + "H", 1) + struct.pack(e + "HHI", 0x0112, 3, 1) + struct.pack(e + "HH", orientation, 0)
    tiff += struct.pack(e + "I", 0)
    payload = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


# EXIF orientation -> how to turn the stored image upright (numpy), per the EXIF 2.3 tag definition
UPRIGHT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1, :],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),  # 90 degrees clockwise
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),  # anti-diagonal transpose: out[y, x] = in[H-1-x, W-1-y]
    8: lambda a: np.rot90(a, 1),   # 90 degrees anticlockwise
}


@needs_ffmpeg
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation(tmp_path, orientation):
    img = smooth_image(24, 40, seed=6)
    jpeg = ffmpeg_encode(tmp_path, img, "a.jpg", "-c:v", "mjpeg", "-q:v", "2")
    stored = _core.image_decode(jpeg)  # no EXIF: as stored
    out = _core.image_decode(exif_jpeg(jpeg, orientation, little_endian=orientation % 2 == 0))
    assert np.array_equal(out, UPRIGHT[orientation](stored))


@needs_ffmpeg
def test_garbage_and_bounds(tmp_path):
    rng = np.random.default_rng(7)
    png = ffmpeg_encode(tmp_path, smooth_image(16, 16), "a.png")
    bad = [b"", b"not an image at all" * 3, rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
           png[:40], png[:8] + b"\x00" * 64, b"\xff\xd8\xff\xe0" + b"\x00" * 100]
    for data in bad:
        with pytest.raises(lyra2.Lyra2Error):
            _core.image_decode(data)
    # the pixel cap refuses before decoding the pixels
    with pytest.raises(lyra2.Lyra2Error, match="pixels"):
        _core.image_decode(png, max_pixels=255)
    assert _core.image_decode(png, max_pixels=256).shape == (16, 16, 3)
    # headers claiming 900 MP / 120 MP with no pixel data: refused before the frame is allocated
    for w, h in [(30000, 30000), (12000, 10000)]:  # beyond libavcodec's own limit; just over our 100 MP
        with pytest.raises(lyra2.Lyra2Error, match="pixels"):
            _core.image_decode(png_bytes([], 8, 2, w, h))
    # a movie is not an image source
    mp4 = tmp_path / "m.mp4"
    media.write_video(np.zeros((2, 16, 16, 3), np.uint8), mp4, fps=8)
    with pytest.raises(lyra2.Lyra2Error, match="not a still-image"):
        _core.image_decode(mp4.read_bytes())


# ---------------------------------------------------------------- resize

def coeffs_reference(src, dst, clamp_weights):
    """cv2.resize INTER_LINEAR 8-bit taps, written from OpenCV's definition: float32 source positions,
    11-bit weights rounded separately, column weights clamped at the edges, row indices only."""
    d = np.arange(dst, dtype=np.float64)
    f = ((d + 0.5) * (1.0 / (dst / src)) - 0.5).astype(np.float32)
    s = np.floor(f).astype(np.int64)
    f = (f - s.astype(np.float32)).astype(np.float32)
    if clamp_weights:
        f[(s < 0) | (s >= src - 1)] = 0
        s = np.clip(s, 0, src - 1)
    w0 = np.rint((np.float32(1) - f) * np.float32(2048)).astype(np.int64)
    w1 = np.rint(f * np.float32(2048)).astype(np.int64)
    return np.clip(s, 0, src - 1), np.clip(s + 1, 0, src - 1), w0, w1


def resize_reference(img, h, w):
    """NumPy reference of the upstream resize (cv2 INTER_LINEAR, uint8, x86 SIMD rounding)."""
    im = img.astype(np.int64).reshape(img.shape[0], img.shape[1], -1)
    x0, x1, a0, a1 = coeffs_reference(im.shape[1], w, True)
    y0, y1, b0, b1 = coeffs_reference(im.shape[0], h, False)
    rows = im[:, x0] * a0[None, :, None] + im[:, x1] * a1[None, :, None]
    v = ((rows[y0] >> 4) * b0[:, None, None] >> 16) + ((rows[y1] >> 4) * b1[:, None, None] >> 16)
    return np.clip((v + 2) >> 2, 0, 255).astype(np.uint8).reshape((h, w) + img.shape[2:])


def bilinear_float(img, h, w):
    """Plain float bilinear, half-pixel centres, edge clamp: what the fixed point approximates."""
    def axis(src, dst):
        f = np.clip((np.arange(dst) + 0.5) * src / dst - 0.5, 0, src - 1)
        i0 = np.floor(f).astype(int)
        return i0, np.minimum(i0 + 1, src - 1), f - i0
    im = img.astype(np.float64)
    y0, y1, ty = axis(img.shape[0], h)
    x0, x1, tx = axis(img.shape[1], w)
    ty, tx = ty[:, None, None], tx[None, :, None]
    top = im[y0][:, x0] * (1 - tx) + im[y0][:, x1] * tx
    bot = im[y1][:, x0] * (1 - tx) + im[y1][:, x1] * tx
    return top * (1 - ty) + bot * ty


RESIZE_CASES = [(300, 500, 480, 832, 3), (1000, 1500, 480, 832, 3), (960, 1664, 480, 832, 3),
                (37, 53, 720, 1280, 3), (481, 833, 480, 832, 3), (10, 10, 7, 13, 3), (5, 7, 16, 8, 4),
                (1, 1, 3, 5, 3), (64, 48, 32, 24, 1), (17, 1, 4, 9, 3)]


@pytest.mark.parametrize("h0,w0,h,w,c", RESIZE_CASES)
def test_resize_matches_reference(h0, w0, h, w, c):
    img = np.random.default_rng(h0 * w0 + c).integers(0, 256, (h0, w0, c), dtype=np.uint8)
    out = _core.image_resize(img, h, w)
    assert out.shape == (h, w, c) and out.dtype == np.uint8
    # the fixed-point reference: exact (tolerance 0)
    assert np.array_equal(out, resize_reference(img, h, w))
    # the float bilinear it approximates: within 1 LSB (11-bit weights, truncations)
    assert np.abs(out.astype(np.float64) - bilinear_float(img, h, w)).max() <= 1.0


def test_resize_matches_cv2_if_installed():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(8)
    for _ in range(40):
        h0, w0, h, w = (int(v) for v in rng.integers(1, 160, 4))
        c = int(rng.choice([1, 3, 4]))
        img = rng.integers(0, 256, (h0, w0, c), dtype=np.uint8)
        ref = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, c)
        assert np.array_equal(_core.image_resize(img, h, w), ref), (h0, w0, h, w, c)


def test_resize_arguments():
    img = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(TypeError, match="uint8"):
        _core.image_resize(img.astype(np.float32), 2, 2)
    with pytest.raises(ValueError, match="C in 1..4"):
        _core.image_resize(np.zeros((4, 4, 5), np.uint8), 2, 2)
    with pytest.raises(ValueError, match="positive"):
        _core.image_resize(img, 0, 2)
    # non-contiguous input is fine
    big = np.random.default_rng(9).integers(0, 256, (8, 10, 3), dtype=np.uint8)
    assert np.array_equal(_core.image_resize(big[::2, ::2], 3, 3), resize_reference(big[::2, ::2].copy(), 3, 3))


# ---------------------------------------------------------------- read_image sources

@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    if not FFMPEG:
        pytest.skip("ffmpeg CLI not installed")
    tmp = tmp_path_factory.mktemp("img")
    img = np.random.default_rng(10).integers(0, 256, (30, 44, 3), dtype=np.uint8)
    data = ffmpeg_encode(tmp, img, "s.png")
    return img, data, tmp / "s.png"


def test_read_image_sources(sample, tmp_path):
    img, data, path = sample
    spaced = tmp_path / "a dir %" / "my image.png"
    spaced.parent.mkdir()
    spaced.write_bytes(data)
    sources = [
        data, bytearray(data), memoryview(data), path, str(path), spaced,
        spaced.as_uri(),                                          # file:// with %-escapes
        "file://localhost" + urllib.parse.quote(str(spaced)),
        "data:image/png;base64," + base64.b64encode(data).decode(),
        "data:image/png;base64," + base64.b64encode(data).decode().rstrip("="),  # padding omitted
        "data:image/png," + urllib.parse.quote_from_bytes(data),  # percent-encoded
        img, np.asfortranarray(img),
    ]
    for s in sources:
        out = media.read_image(s)
        assert out.dtype == np.uint8 and np.array_equal(out, img), type(s)
    assert media.read_image(img) is not img  # arrays are copied, never aliased


def test_read_image_resolution(sample):
    img, data, _ = sample
    assert media.read_image(data, "480p").shape == (480, 832, 3)
    assert media.read_image(data, "720p").shape == (720, 1280, 3)
    out = media.read_image(data, (16, 24))
    assert np.array_equal(out, resize_reference(img, 16, 24))
    assert np.array_equal(media.read_image(data, (30, 44)), img)  # same size: untouched
    for bad, exc in [("1080p", ValueError), ((0, 10), ValueError), ((10, 10.0), TypeError), ((True, 4), TypeError),
                     ((10,), TypeError), (480, TypeError), ((10, 99999), ValueError)]:
        with pytest.raises(exc, match="resolution"):
            media.read_image(data, bad)


def test_read_image_bad_sources(tmp_path):
    cases = [
        (123, TypeError, "image"), (None, TypeError, "image"), ("", ValueError, "empty"), (b"", ValueError, "empty"),
        ("ftp://example.com/a.png", ValueError, "scheme"), ("data:image/png;base64", ValueError, "','"),
        ("data:image/png;base64,@@@@", ValueError, "base64"), ("file://otherhost/a.png", ValueError, "host"),
        (np.zeros((4, 4, 3), np.float32), TypeError, "uint8"), (np.zeros((4, 4), np.uint8), ValueError, "shape"),
        (np.zeros((4, 4, 2), np.uint8), ValueError, "shape"), (np.zeros((0, 4, 3), np.uint8), ValueError, "shape"),
    ]
    for source, exc, match in cases:
        with pytest.raises(exc, match=match):
            media.read_image(source)
    with pytest.raises(lyra2.Lyra2Error, match="cannot read"):
        media.read_image(tmp_path / "missing.png")
    with pytest.raises(lyra2.Lyra2Error, match="directory"):
        media.read_image(tmp_path)
    (tmp_path / "junk.png").write_bytes(b"\x89PNG but not really" * 10)
    with pytest.raises(lyra2.Lyra2Error):
        media.read_image(str(tmp_path / "junk.png"))
    with pytest.raises(lyra2.Lyra2Error, match="not a recognised"):
        media.read_image("data:text/plain,hello%20world")


class _Handler(http.server.BaseHTTPRequestHandler):
    png = b""
    big = 0

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/img.png":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(self.png)))
            self.end_headers()
            self.wfile.write(self.png)
        elif self.path == "/big-announced":
            self.send_response(200)
            self.send_header("Content-Length", str(self.big))
            self.end_headers()
            self.wfile.write(b"\0" * self.big)
        elif self.path == "/big-streamed":  # no Content-Length: the body ends when the connection closes
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"\0" * self.big)
            self.close_connection = True
        else:
            self.send_error(404, "Not Found")


@pytest.fixture
def server(sample, monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    _Handler.png = sample[1]
    _Handler.big = 4096
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_read_image_http(server, sample, monkeypatch):
    assert np.array_equal(media.read_image(server + "/img.png"), sample[0])
    with pytest.raises(lyra2.Lyra2Error, match="HTTP 404"):
        media.read_image(server + "/nope.png")
    monkeypatch.setattr(media, "MAX_IMAGE_BYTES", 1000)
    with pytest.raises(lyra2.Lyra2Error, match="announces 4096 bytes"):
        media.read_image(server + "/big-announced")
    with pytest.raises(lyra2.Lyra2Error, match="over 1000 bytes"):
        media.read_image(server + "/big-streamed")
    # nothing listens on port 9 (discard) of 127.0.0.1 here: a connection failure, not a hang
    with pytest.raises(lyra2.Lyra2Error, match="cannot fetch"):
        media.load_image_bytes("http://127.0.0.1:9/x.png", timeout=5)


# ---------------------------------------------------------------- video

def natural_image(h, w, seed):
    """Photo-like statistics: luma detail plus slowly varying colour. (Independent detail in each RGB
    channel would be mostly chroma, which yuv420p halves by design: ~31 dB even at crf 0 at 48x34.)"""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)

    def waves(n, fmax, amp):
        v = np.zeros((h, w))
        for _ in range(n):
            fy, fx, ph = rng.uniform(0.3, fmax), rng.uniform(0.3, fmax), rng.uniform(0, 2 * np.pi)
            v += amp * np.sin(2 * np.pi * (fy * y / h + fx * x / w) + ph)
        return v
    luma = 128 + waves(3, 2.0, 30)
    rgb = np.stack([luma + waves(1, 1.0, 20), luma + waves(1, 1.0, 15), luma + waves(1, 1.0, 20)], -1)
    return np.clip(rgb, 0, 255).round().astype(np.uint8)


def moving_frames(t, h, w):
    base = natural_image(h + t * 2, w + t * 3, seed=11)
    return np.stack([base[i * 2:i * 2 + h, i * 3:i * 3 + w] for i in range(t)])  # a slow pan


def probe(path):
    out = subprocess.run([FFPROBE, "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                          "stream=codec_name,width,height,r_frame_rate,avg_frame_rate,nb_read_frames,pix_fmt",
                          "-of", "default=nw=1", str(path)], check=True, capture_output=True, text=True).stdout
    return dict(line.split("=", 1) for line in out.split())


def decode_video(path, h, w):
    raw = subprocess.run([FFMPEG, "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         check=True, capture_output=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)


@needs_ffmpeg
@pytest.mark.parametrize("t,h,w,fps", [(24, 64, 96, 16), (9, 48, 34, 8), (5, 48, 64, 24)])
def test_video_round_trip(tmp_path, t, h, w, fps):
    frames = moving_frames(t, h, w)
    path = tmp_path / "out.mp4"
    assert media.write_video(frames, path, fps=fps) == path
    info = probe(path)
    assert info["codec_name"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert (int(info["width"]), int(info["height"])) == (w, h)
    assert int(info["nb_read_frames"]) == t
    assert info["r_frame_rate"] == f"{fps}/1" and info["avg_frame_rate"] == f"{fps}/1"
    back = decode_video(path, h, w)
    assert back.shape == frames.shape
    assert psnr(back, frames) >= 35.0
    assert sorted(os.listdir(tmp_path)) == ["out.mp4"]  # no temporary file left


@needs_ffmpeg
def test_video_crf_and_overwrite(tmp_path):
    frames = moving_frames(6, 64, 64)
    path = str(tmp_path / "v.mp4")
    media.write_video(frames, path, fps=12, crf=40)
    low = os.path.getsize(path)
    media.write_video(list(frames), path, fps=12, crf=10)  # replaces the file; lists of frames work
    high = os.path.getsize(path)
    assert high > low
    assert psnr(decode_video(path, 64, 64), frames) > 40


def test_video_bad_arguments(tmp_path):
    good = np.zeros((2, 16, 16, 3), np.uint8)
    path = tmp_path / "v.mp4"
    cases = [
        (dict(frames=np.zeros((2, 15, 16, 3), np.uint8)), ValueError, "even"),
        (dict(frames=np.zeros((2, 16, 17, 3), np.uint8)), ValueError, "even"),
        (dict(frames=np.zeros((0, 16, 16, 3), np.uint8)), ValueError, "at least one"),
        (dict(frames=np.zeros((2, 16, 16, 4), np.uint8)), ValueError, "shape"),
        (dict(frames=np.zeros((16, 16, 3), np.uint8)), ValueError, "shape"),
        (dict(frames=np.zeros((2, 16, 16, 3), np.float32)), TypeError, "uint8"),
        (dict(frames="frames"), TypeError, "frames"),
        (dict(frames=[]), TypeError, "frames"),
        (dict(fps=7), ValueError, "fps"), (dict(fps=25), ValueError, "fps"),
        (dict(fps=16.0), TypeError, "fps"), (dict(fps=True), TypeError, "fps"),
        (dict(crf=-1), ValueError, "crf"), (dict(crf=52), ValueError, "crf"), (dict(crf="25"), TypeError, "crf"),
        (dict(path=3), TypeError, "path"),
        (dict(preset="turbo"), ValueError, "preset"), (dict(preset=None), ValueError, "preset"),
    ]
    for kw, exc, match in cases:
        args = dict(frames=good, path=path, fps=16, crf=25)
        args.update(kw)
        with pytest.raises(exc, match=match):
            media.write_video(**args)
    # the C layer validates on its own too
    with pytest.raises(ValueError, match="even"):
        _core.video_write(np.zeros((1, 15, 16, 3), np.uint8), str(path), 16, 25)
    with pytest.raises(ValueError, match="fps"):
        _core.video_write(good, str(path), 30, 25)
    with pytest.raises(ValueError, match="preset"):
        _core.video_write(good, str(path), 16, 25, "turbo")
    assert not path.exists()


@needs_ffmpeg
def test_video_presets(tmp_path):
    """Every x264 preset writes a decodable video of the frames; "fast" is the default (lyra2.media.DEFAULT_PRESET)
    and Video.save uses it."""
    frames = moving_frames(6, 64, 64)
    assert media.DEFAULT_PRESET == "fast"
    for preset in ("ultrafast", "fast", "medium"):
        path = str(tmp_path / f"{preset}.mp4")
        media.write_video(frames, path, fps=12, preset=preset)
        assert psnr(decode_video(path, 64, 64), frames) >= 35.0
    media.write_video(frames, str(tmp_path / "default.mp4"), fps=12)
    with open(tmp_path / "default.mp4", "rb") as a, open(tmp_path / "fast.mp4", "rb") as b:
        assert a.read() == b.read()


def test_video_failed_write_leaves_nothing(tmp_path):
    frames = np.zeros((2, 16, 16, 3), np.uint8)
    with pytest.raises(lyra2.Lyra2Error, match="cannot create"):
        media.write_video(frames, tmp_path / "no such dir" / "v.mp4")
    target = tmp_path / "adir"
    target.mkdir()
    # the encode succeeds, the final rename onto a directory fails: the temporary file is removed
    with pytest.raises(lyra2.Lyra2Error, match="into place"):
        media.write_video(frames, target)
    assert sorted(os.listdir(tmp_path)) == ["adir"] and os.listdir(target) == []
