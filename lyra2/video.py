"""lyra2.Video: the frames, cameras and depth of one zoom run, and its fal-shaped result."""
import os

import numpy as np


class Video:
    """Result of lyra2.zoom.

    Attributes:
      frames      uint8 (T, H, W, 3)
      fps         int
      seed        int
      timings     dict of seconds per stage ("encode_s", "zoom_in_s", "zoom_out_s", ...)
      w2c         float32 (T, 4, 4) world-to-camera of every frame (world = camera of the input image)
      intrinsics  float32 (T, 3, 3) pixel intrinsics of every frame
      depth       float32 (H, W) depth of frame 0 used for the trajectory and warping
      mode        "generate" | "preview"
      path        the MP4 written for this result, or None until save()/to_fal() writes one
      depth_source  where `depth` came from ("user", "model:<name>", "heuristic:<name>")
    """

    def __init__(self, frames, fps, seed, timings, w2c, intrinsics, depth, mode, path=None, depth_source=None):
        self.frames = frames
        self.fps = int(fps)
        self.seed = int(seed)
        self.timings = dict(timings)
        self.w2c = w2c
        self.intrinsics = intrinsics
        self.depth = depth
        self.mode = mode
        self.path = path
        self.depth_source = depth_source

    def __len__(self):
        return int(self.frames.shape[0])

    def __repr__(self):
        t, h, w, _ = self.frames.shape
        return (f"lyra2.Video(mode={self.mode!r}, frames={t}, size={w}x{h}, fps={self.fps}, seed={self.seed}, "
                f"path={self.path!r})")

    def save(self, path, crf=25):
        """Writes the frames as an H.264 MP4 (atomically: temp file + rename) and returns the path."""
        from .media import write_video

        path = os.fspath(path)
        write_video(self.frames, path, fps=self.fps, crf=crf)
        self.path = os.path.abspath(path)
        return self.path

    def to_fal(self):
        """The `fal-ai/lyra-2/zoom` result dict. Writes the MP4 to a temporary file first if it was not saved."""
        if self.path is None or not os.path.exists(self.path):
            self.save(default_output_path())
        return fal_result(self.path, self.seed, self.timings, mode=self.mode)


def default_output_path():
    """A fresh file in $LYRA2_OUTPUT_DIR (default: <tmp>/lyra2-outputs; not <tmp>/lyra2, which would shadow the
    package as a namespace package for scripts run from <tmp>)."""
    import tempfile
    import uuid

    folder = os.environ.get("LYRA2_OUTPUT_DIR") or os.path.join(tempfile.gettempdir(), "lyra2-outputs")
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, f"lyra2-zoom-{uuid.uuid4().hex[:12]}.mp4")


PREVIEW_NOTE = ("preview: no Lyra-2 checkpoint was used; every frame is the input image forward-warped along the "
                "camera path with holes filled classically, not a generated video")


def fal_result(path, seed, timings, mode=None):
    """Shapes a written MP4 as the endpoint's output: {"video": {...}, "seed", "timings"}, plus lyra2's "mode"
    ("generate" | "preview") and, for a preview, a "preview" note, so a preview never passes for a generation."""
    path = os.path.abspath(path)
    from pathlib import Path

    return {
        "video": {
            "url": Path(path).as_uri(),
            "content_type": "video/mp4",
            "file_name": os.path.basename(path),
            "file_size": os.path.getsize(path),
        },
        "seed": int(seed),
        "timings": {k: float(v) for k, v in timings.items()},
    } | ({} if mode is None else {"mode": mode}) | ({"preview": PREVIEW_NOTE} if mode == "preview" else {})


def as_frames(frames):
    """Checks a frame array: uint8 (T, H, W, 3)."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames: expected uint8 (T, H, W, 3); got {frames.dtype} {frames.shape}")
    return frames
