"""x264 speed presets for the MP4 every run writes (issue 19): encode time, file size and PSNR against the frames,
at the same CRF, measured in one run on the same frames.

    python benchmarks/x264_presets.py [--size 480p|720p] [--crf 25] [--repeats 3]

Frames: the preview of the bundled example image (lyra2.zoom mode="preview", 81 frames, the fal default path), so
the content is what lyra2 encodes: a forward-warped photograph with filled holes. PSNR is over RGB, the decoded MP4
(lyra2's own libav reader) against the frames given to the encoder; medians of --repeats interleaved encodes.
Prints each preset's time relative to "medium" (upstream's, imageio-ffmpeg's default) and its PSNR difference."""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import lyra2  # noqa: E402
from lyra2 import _core  # noqa: E402
from lyra2.media import VIDEO_PRESETS, write_video  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="480p", choices=("480p", "720p"))
    ap.add_argument("--crf", type=int, default=25)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--presets", default="ultrafast,superfast,veryfast,faster,fast,medium")
    a = ap.parse_args()
    presets = a.presets.split(",")
    for p in presets:
        if p not in VIDEO_PRESETS:
            ap.error(f"--presets: {p!r} is not one of {VIDEO_PRESETS}")
    video = lyra2.zoom(os.path.join(ROOT, "examples", "coffee.png"), "a cup", mode="preview", resolution=a.size,
                       progress=False)
    frames = video.frames
    print(f"lyra2 {lyra2.__version__}: {frames.shape[0]} frames {frames.shape[2]}x{frames.shape[1]}, crf {a.crf}, "
          f"load average {os.getloadavg()[0]:.1f}")
    times = {p: [] for p in presets}
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.repeats):
            for p in presets:  # interleaved, so load changes hit every preset alike
                path = os.path.join(tmp, f"{p}.mp4")
                t = time.perf_counter()
                write_video(frames, path, fps=16, crf=a.crf, preset=p)
                times[p].append(time.perf_counter() - t)
                if r == 0:
                    decoded, _ = _core.video_read(path)
                    out[p] = (os.path.getsize(path), psnr(decoded, frames))
    ref_t = np.median(times["medium"]) if "medium" in times else None
    ref_q = out["medium"][1] if "medium" in out else None
    print(f"{'preset':10s} {'encode s':>9s} {'vs medium':>9s} {'size KB':>8s} {'PSNR dB':>8s} {'dPSNR':>6s}")
    for p in presets:
        t = float(np.median(times[p]))
        size, q = out[p]
        rel = f"{t / ref_t:9.2f}" if ref_t else f"{'':9s}"
        dq = f"{q - ref_q:+6.2f}" if ref_q is not None else ""
        print(f"{p:10s} {t:9.3f} {rel} {size / 1024:8.0f} {q:8.2f} {dq}")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
