"""Command line: `lyra2 zoom IMAGE --prompt TEXT [fields...] -o out.mp4`, `lyra2 reconstruct VIDEO -o scene.ply`
and `lyra2 convert SRC DST`.

`python -m lyra2` is the same program. Every endpoint field is a flag (underscores become dashes)."""
import argparse
import json
import os
import sys

from .fields import DIRECTIONS, NUM_FRAMES, RESOLUTIONS, SCHEMA, TRAJECTORIES


def _bool(text):
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _zoom_parser(sub):
    p = sub.add_parser("zoom", help="one image + a prompt -> a camera-controlled video",
                       description="Render a Lyra-2 zoom video (generate mode with a converted checkpoint, "
                                   "preview mode without).")
    p.add_argument("image", help="image path, file:// or http(s) URL, or data: URI")
    p.add_argument("--prompt", required=True, help="text prompt describing the scene")
    p.add_argument("--zoom-direction", choices=DIRECTIONS, default=SCHEMA["zoom_direction"][1])
    p.add_argument("--num-frames", type=int, choices=NUM_FRAMES, default=SCHEMA["num_frames"][1])
    p.add_argument("--zoom-in-trajectory", choices=TRAJECTORIES, default=SCHEMA["zoom_in_trajectory"][1])
    p.add_argument("--zoom-in-strength", type=float, default=SCHEMA["zoom_in_strength"][1], help="0 to 2")
    p.add_argument("--zoom-out-trajectory", choices=TRAJECTORIES, default=SCHEMA["zoom_out_trajectory"][1])
    p.add_argument("--zoom-out-strength", type=float, default=SCHEMA["zoom_out_strength"][1], help="0 to 3")
    p.add_argument("--resolution", choices=tuple(RESOLUTIONS), default=SCHEMA["resolution"][1])
    p.add_argument("--use-dmd", type=_bool, default=SCHEMA["use_dmd"][1], metavar="{true,false}")
    p.add_argument("--guidance-scale", type=float, default=SCHEMA["guidance_scale"][1], help="1 to 15")
    p.add_argument("--num-inference-steps", type=int, default=SCHEMA["num_inference_steps"][1], help="1 to 100")
    p.add_argument("--frames-per-second", "--fps", type=int, default=SCHEMA["frames_per_second"][1], help="8 to 24")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("-o", "--output", required=True, help="output .mp4 path")
    p.add_argument("--checkpoint-dir", default=None, help="converted weights folder (default $LYRA2_CHECKPOINT_DIR)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--max-gpu-memory", type=float, default=None, metavar="GB",
                   help="GPU memory budget in GB: DiT blocks beyond it stream from host memory; the plan is logged")
    p.add_argument("--mode", choices=("auto", "preview", "generate"), default="auto")
    p.add_argument("--ply", default=None, metavar="OUT.ply",
                   help="also write the run's point cloud (binary PLY: x y z red green blue)")
    p.add_argument("--cameras", default=None, metavar="OUT.npz",
                   help="also write the cameras (w2c, intrinsics) for `lyra2 reconstruct`")
    p.add_argument("--splats", default=None, metavar="OUT.ply",
                   help="also reconstruct 3D Gaussian splats (needs DA3 with its GS head) and write the 3DGS PLY")
    p.add_argument("--json", action="store_true", help="print the fal-shaped result dict as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _run_zoom(ns):
    from . import zoom

    names = [n for n in SCHEMA if n not in ("image_url",)]
    fields = {n: getattr(ns, n) for n in names}
    for flag, value, ext in (("--ply", ns.ply, ".ply"), ("--cameras", ns.cameras, ".npz"), ("--splats", ns.splats, ".ply")):
        if value is not None and not value.endswith(ext):
            raise ValueError(f"{flag}: {value!r} must end in {ext}")
    video = zoom(ns.image, progress=not ns.no_progress, checkpoint_dir=ns.checkpoint_dir, device=ns.device,
                 max_gpu_memory=ns.max_gpu_memory, mode=ns.mode, output_path=ns.output,
                 reconstruct=ns.splats is not None, **fields)
    written = []
    if ns.ply is not None:
        written.append(video.save_ply(ns.ply))
    if ns.cameras is not None:
        written.append(video.save_cameras(ns.cameras))
    if ns.splats is not None:
        written.append(video.gaussians.save_ply(ns.splats))
    if not ns.json:
        for path in written:
            print(f"wrote {path}")
    if ns.json:
        print(json.dumps(video.to_fal(), indent=2))
    else:
        print(f"wrote {os.path.abspath(ns.output)} ({len(video)} frames, {video.mode} mode, seed {video.seed})")
    return 0


def _reconstruct_parser(sub):
    p = sub.add_parser("reconstruct", help="a video + its cameras -> 3D Gaussian splats (3DGS PLY)",
                       description="Lift a video with known cameras to 3D Gaussian splats with Depth Anything 3's "
                                   "Gaussian head (as Lyra-2's recon step), write the 3DGS PLY and optionally a "
                                   "flythrough along the cameras.")
    p.add_argument("video", help="video file (e.g. the MP4 of `lyra2 zoom`)")
    p.add_argument("--cameras", default=None, metavar="CAMS.npz",
                   help="w2c (T, 4, 4) + intrinsics (T, 3, 3) .npz (`lyra2 zoom --cameras`; upstream's "
                        "custom-trajectory format); default: VIDEO with .cameras.npz")
    p.add_argument("-o", "--output", required=True, help="output .ply (standard 3DGS layout)")
    p.add_argument("--render", default=None, metavar="OUT.mp4", help="also render a flythrough along the cameras")
    p.add_argument("--checkpoint-dir", default=None, help="converted weights folder (default $LYRA2_CHECKPOINT_DIR)")
    p.add_argument("--max-views", type=int, default=128, help="frames used, uniformly spaced (default 128)")
    p.add_argument("--chunk-size", type=int, default=32, help="views per DA3 call (default 32)")
    p.add_argument("--chunk-overlap", type=int, default=4, help="views shared by consecutive calls (default 4)")
    p.add_argument("--down-ratio", type=int, default=2, help="GS grid = processed image / this (1, 2, 7, 14)")
    p.add_argument("--opacity-percentile", type=float, default=None,
                   help="drop this fraction of the least opaque splats from the PLY (e.g. 0.1)")
    p.add_argument("--no-border-prune", action="store_true", help="keep the splats of each view's outer 8/256")
    p.add_argument("--sh-rest", action="store_true", help="write f_rest_* (SH bands above DC) too")
    p.add_argument("--json", action="store_true", help="print a result dict as JSON")
    return p


def _run_reconstruct(ns):
    import numpy as np

    from . import _core
    from .geometry import load_custom_trajectory
    from .reconstruct import reconstruct

    if not ns.output.endswith(".ply"):
        raise ValueError(f"--output: {ns.output!r} must end in .ply")
    if ns.render is not None and not ns.render.lower().endswith(".mp4"):
        raise ValueError(f"--render: {ns.render!r} must end in .mp4")
    cams = ns.cameras or os.path.splitext(ns.video)[0] + ".cameras.npz"
    if not os.path.isfile(cams):
        raise ValueError(f"--cameras: {cams!r} does not exist; write it with `lyra2 zoom ... --cameras OUT.npz`")
    frames, fps = _core.video_read(ns.video)
    w2c, K = load_custom_trajectory(cams, frames.shape[1], frames.shape[2], pose_scale=1.0)
    if len(w2c) != len(frames):
        raise ValueError(f"--cameras: {len(w2c)} cameras for {len(frames)} frames of {ns.video!r}")
    g = reconstruct(frames, w2c, K, ns.checkpoint_dir, max_views=ns.max_views, chunk_size=ns.chunk_size,
                    chunk_overlap=ns.chunk_overlap, down_ratio=ns.down_ratio)
    path = g.save_ply(ns.output, prune_border=not ns.no_border_prune, opacity_percentile=ns.opacity_percentile,
                      sh_dc_only=not ns.sh_rest)
    rows = int(g._ply_mask(not ns.no_border_prune, ns.opacity_percentile).sum())
    result = {"ply": path, "ply_rows": rows, "gaussians": len(g), "frames": len(frames)}
    if ns.render is not None:
        result["render"] = g.render_video(ns.render, w2c, K, frames.shape[1:3],
                                          fps=int(np.clip(round(fps or 16), 8, 24)))
    if ns.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"wrote {path} ({rows} of {len(g)} Gaussians from {len(frames)} frames)")
        if ns.render is not None:
            print(f"wrote {result['render']}")
    return 0


def _cli_warning(message, category, filename, lineno, line=None):
    """Warnings on the command line read as messages, not as source locations."""
    return f"lyra2: warning: {message}\n"


def main(argv=None):
    import warnings

    warnings.formatwarning = _cli_warning
    parser = argparse.ArgumentParser(prog="lyra2", description="lyra2: Lyra 2.0 zoom inference in C/CUDA")
    sub = parser.add_subparsers(dest="command", required=True)
    _zoom_parser(sub)
    _reconstruct_parser(sub)
    sub.add_parser("convert", add_help=False,
                   help="convert upstream checkpoints (.pth / DCP) to safetensors, without torch "
                        "(lyra2 convert --help)")
    sub.add_parser("backends", help="print what this build can run")
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["convert"]:
        from .convert import main as convert_main

        return convert_main(argv[1:])
    ns = parser.parse_args(argv)
    from ._core import Lyra2Error

    try:
        if ns.command == "zoom":
            return _run_zoom(ns)
        if ns.command == "reconstruct":
            return _run_reconstruct(ns)
        if ns.command == "backends":
            from . import backends

            print(json.dumps(backends(), indent=2))
            return 0
    except (ValueError, TypeError, Lyra2Error, FileExistsError) as e:
        print(f"lyra2: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lyra2: interrupted", file=sys.stderr)
        return 130
    return 1
