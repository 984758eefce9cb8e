"""The main job end to end in preview mode (no weights): lyra2.zoom, the fal drop-ins and the CLI."""
import base64
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import lyra2
from lyra2.fields import NUM_FRAMES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "coffee.png")


@pytest.fixture(autouse=True)
def no_checkpoint(monkeypatch, tmp_path):
    monkeypatch.delenv("LYRA2_CHECKPOINT_DIR", raising=False)
    monkeypatch.setenv("LYRA2_OUTPUT_DIR", str(tmp_path / "out"))


def _probe(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                          "stream=nb_read_frames,width,height,r_frame_rate,codec_name,pix_fmt", "-of", "json", path],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["streams"][0]


def test_zoom_in_preview_writes_video(tmp_path):
    out = tmp_path / "coffee.mp4"
    with pytest.warns(UserWarning, match="PREVIEW"):
        video = lyra2.zoom(EXAMPLE, "an espresso cup", seed=3, output_path=str(out), progress=False)
    assert video.mode == "preview" and video.seed == 3
    assert video.frames.shape == (81, 480, 832, 3) and video.frames.dtype == np.uint8
    assert video.w2c.shape == (81, 4, 4) and video.intrinsics.shape == (81, 3, 3)
    assert video.depth.shape == (480, 832) and video.depth.dtype == np.float32
    assert video.depth_source.startswith("heuristic:")
    np.testing.assert_allclose(video.w2c[0], np.eye(4), atol=1e-6)
    # frame 0 is the input image as read at the output resolution
    np.testing.assert_array_equal(video.frames[0], lyra2.read_image(EXAMPLE, resolution="480p"))
    # the camera moves, so the last frame differs from the first
    assert np.abs(video.frames[-1].astype(int) - video.frames[0]).mean() > 5
    info = _probe(str(out))
    assert (int(info["nb_read_frames"]), info["width"], info["height"]) == (81, 832, 480)
    assert info["r_frame_rate"] == "16/1" and info["codec_name"] == "h264" and info["pix_fmt"] == "yuv420p"
    result = video.to_fal()
    assert result["video"]["url"] == out.resolve().as_uri()
    assert result["video"]["file_size"] == os.path.getsize(out)
    assert set(result) == {"video", "seed", "timings", "mode", "preview"}
    assert set(result["timings"]) >= {"encode_s", "zoom_in_s"}
    assert result["mode"] == "preview" and "not a generated video" in result["preview"]


def test_both_directions_share_the_anchor_once():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        both = lyra2.zoom(EXAMPLE, "cup", zoom_direction="both", progress=False, frames_per_second=8)
        zin = lyra2.zoom(EXAMPLE, "cup", zoom_direction="in", progress=False)
        zout = lyra2.zoom(EXAMPLE, "cup", zoom_direction="out", progress=False)
    n = NUM_FRAMES[0]
    assert len(both) == 2 * n - 1 and both.fps == 8
    np.testing.assert_array_equal(both.frames[: n], zout.frames[::-1])
    np.testing.assert_array_equal(both.frames[n - 1:], zin.frames)
    assert set(both.timings) >= {"encode_s", "zoom_in_s", "zoom_out_s"}


def test_user_depth_is_used():
    h, w = 480, 832
    depth = np.full((h, w), 3.0, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        video = lyra2.zoom(EXAMPLE, "cup", depth=depth, zoom_in_trajectory="horizontal_zoom", progress=False)
    assert video.depth_source == "user"
    np.testing.assert_array_equal(video.depth, depth)
    # horizontal_zoom moves forward by i*s*c/N with c = the subject depth (3.0 for a constant depth)
    assert video.w2c[-1][2, 3] == pytest.approx(-0.5 * 3.0 * 80 / 81, rel=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="depth"):
            lyra2.zoom(EXAMPLE, "cup", depth=np.ones((10, 10)), progress=False)
        with pytest.raises(ValueError, match="depth: no value .* 999.9"):
            lyra2.zoom(EXAMPLE, "cup", depth=np.full((h, w), 1500.0), progress=False)  # millimetres


def test_subscribe_reports_progress_and_fal_shape():
    updates = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data_uri = "data:image/png;base64," + base64.b64encode(open(EXAMPLE, "rb").read()).decode()
        result = lyra2.subscribe("fal-ai/lyra-2/zoom", {"image_url": data_uri, "prompt": "cup", "seed": 11},
                                 with_logs=True, on_queue_update=updates.append)
    assert result["seed"] == 11
    assert result["video"]["content_type"] == "video/mp4" and result["video"]["url"].startswith("file://")
    assert os.path.getsize(result["video"]["url"][len("file://"):]) == result["video"]["file_size"]
    kinds = [type(u).__name__ for u in updates]
    # one event per poll, as fal_client's subscribe: Queued (unless the worker took the job before the first
    # poll), then InProgress, then one Completed
    assert kinds[-1] == "Completed" and kinds.count("Completed") == 1 and "InProgress" in kinds
    assert kinds == sorted(kinds, key=["Queued", "InProgress", "Completed"].index)
    logs = [entry for u in updates if isinstance(u, lyra2.InProgress) for entry in u.logs]
    assert logs and all(set(e) == {"message", "level", "timestamp", "source"} for e in logs)
    assert any("heuristic" in e["message"] for e in logs)


def test_subscribe_without_logs_hides_them():
    updates = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lyra2.subscribe("fal-ai/lyra-2/zoom", {"image_url": EXAMPLE, "prompt": "cup"},
                        on_queue_update=updates.append)
    assert all(u.logs is None for u in updates if isinstance(u, (lyra2.InProgress, lyra2.Completed)))


def test_cli_json(tmp_path):
    out = tmp_path / "cli.mp4"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "lyra2", "zoom", EXAMPLE, "--prompt", "cup", "--seed", "5",
                           "--zoom-in-trajectory", "horizontal_zoom", "--fps", "12", "-o", str(out), "--json",
                           "--no-progress"], capture_output=True, text=True, env=env, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["seed"] == 5 and result["video"]["file_name"] == "cli.mp4"
    assert _probe(str(out))["r_frame_rate"] == "12/1"
    bad = subprocess.run([sys.executable, "-m", "lyra2", "zoom", EXAMPLE, "--prompt", "cup", "--zoom-in-strength",
                          "9", "-o", str(tmp_path / "bad.mp4")], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "zoom_in_strength" in bad.stderr
    assert not (tmp_path / "bad.mp4").exists()
