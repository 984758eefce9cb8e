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
      depth_views   lyra2.scene3d.DepthViews: the depth of the run's other frames (generate mode: every view of the
                    DA3 depth-window updates), or None; point_cloud() fuses them with frame 0's depth
      ply_path      the point-cloud PLY written by save_ply(), or None
      gaussians     lyra2.Gaussians from zoom(..., reconstruct=True), or None
    """

    def __init__(self, frames, fps, seed, timings, w2c, intrinsics, depth, mode, path=None, depth_source=None,
                 depth_views=None):
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
        self.depth_views = depth_views
        self.ply_path = None
        self.gaussians = None

    def __len__(self):
        return int(self.frames.shape[0])

    def __repr__(self):
        t, h, w, _ = self.frames.shape
        return (f"lyra2.Video(mode={self.mode!r}, frames={t}, size={w}x{h}, fps={self.fps}, seed={self.seed}, "
                f"path={self.path!r})")

    def save(self, path, crf=25, preset=None):
        """Writes the frames as an H.264 MP4 (atomically: temp file + rename) and returns the path. crf and preset:
        as lyra2.media.write_video (preset None: its default)."""
        from .media import DEFAULT_PRESET, write_video

        path = os.fspath(path)
        write_video(self.frames, path, fps=self.fps, crf=crf, preset=DEFAULT_PRESET if preset is None else preset)
        self.path = os.path.abspath(path)
        return self.path

    def _views(self):
        """Frame 0's depth (the input camera, whole) first, then the depth-window views."""
        anchor = self._anchor_index()
        return [(self.frames[anchor], self.depth, self.w2c[anchor], self.intrinsics[anchor], 1)] + \
            list(self.depth_views or ())

    def _anchor_index(self):
        """The frame shot from the input camera (w2c = I): 0, or the middle of a "both" video."""
        eye = np.eye(4, dtype=np.float32)
        for i in (0, len(self) // 2):
            if np.allclose(self.w2c[i], eye, atol=1e-6):
                return i
        return 0

    def point_cloud(self, stride=4, max_points=2_000_000, voxel_size=None):
        """Coloured points of the scene in the world frame (the input camera, OpenCV axes), fused from the depth
        this run has: frame 0's depth (every run, preview too) plus, in generate mode, the DA3 depth of the
        depth-window frames. Every `stride`-th pixel is unprojected; points within one voxel (`voxel_size`, default
        half a strided pixel at frame 0's median depth) are deduplicated; at most `max_points` are returned.
        Returns (xyz float32 (N, 3), rgb uint8 (N, 3))."""
        from .scene3d import fuse_point_cloud

        if self.depth is None:
            raise ValueError("point_cloud: this Video has no depth (depth is None)")
        return fuse_point_cloud(self._views(), stride=stride, max_points=max_points, voxel_size=voxel_size)

    def save_ply(self, path, stride=4, max_points=2_000_000, voxel_size=None):
        """Writes point_cloud(...) as a binary little-endian PLY (x, y, z float; red, green, blue uchar),
        atomically, and returns the absolute path."""
        from .scene3d import write_point_ply

        xyz, rgb = self.point_cloud(stride=stride, max_points=max_points, voxel_size=voxel_size)
        self.ply_path = write_point_ply(path, xyz, rgb)
        return self.ply_path

    def save_cameras(self, path):
        """Writes the cameras as upstream's custom-trajectory .npz (w2c (T, 4, 4), intrinsics (T, 3, 3),
        image_height, image_width), which `lyra2 reconstruct VIDEO --cameras` and lyra2.generate read. Atomic."""
        path = os.fspath(path)
        if not path.endswith(".npz"):
            raise ValueError(f"path: {path!r} must end in .npz")
        tmp = f"{path[:-4]}.tmp-{os.getpid()}.npz"
        h, w = self.frames.shape[1:3]
        try:
            np.savez(tmp, w2c=np.asarray(self.w2c, np.float32), intrinsics=np.asarray(self.intrinsics, np.float32),
                     image_height=np.int64(h), image_width=np.int64(w))
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return os.path.abspath(path)

    def to_fal(self):
        """The `fal-ai/lyra-2/zoom` result dict. Writes the MP4 to a temporary file first if it was not saved.
        After save_ply() the dict also has a "point_cloud" file entry (lyra2 extension; fal's has none)."""
        if self.path is None or not os.path.exists(self.path):
            self.save(default_output_path())
        result = fal_result(self.path, self.seed, self.timings, mode=self.mode)
        if self.ply_path is not None and os.path.exists(self.ply_path):
            result["point_cloud"] = file_entry(self.ply_path, "application/octet-stream")
        return result


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


def file_entry(path, content_type):
    """A fal File dict for a written local file: {"url": file://…, "content_type", "file_name", "file_size"}."""
    from pathlib import Path

    path = os.path.abspath(path)
    return {"url": Path(path).as_uri(), "content_type": content_type, "file_name": os.path.basename(path),
            "file_size": os.path.getsize(path)}


def fal_result(path, seed, timings, mode=None):
    """Shapes a written MP4 as the endpoint's output: {"video": {...}, "seed", "timings"}, plus lyra2's "mode"
    ("generate" | "preview") and, for a preview, a "preview" note, so a preview never passes for a generation."""
    return {
        "video": file_entry(path, "video/mp4"),
        "seed": int(seed),
        "timings": {k: float(v) for k, v in timings.items()},
    } | ({} if mode is None else {"mode": mode}) | ({"preview": PREVIEW_NOTE} if mode == "preview" else {})


def as_frames(frames):
    """Checks a frame array: uint8 (T, H, W, 3)."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames: expected uint8 (T, H, W, 3); got {frames.dtype} {frames.shape}")
    return frames
