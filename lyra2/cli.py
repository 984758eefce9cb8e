"""Command line: `lyra2 zoom IMAGE --prompt TEXT [fields...] -o out.mp4` and `lyra2 convert SRC DST`.

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
    p.add_argument("--json", action="store_true", help="print the fal-shaped result dict as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _run_zoom(ns):
    from . import zoom

    names = [n for n in SCHEMA if n not in ("image_url",)]
    fields = {n: getattr(ns, n) for n in names}
    video = zoom(ns.image, progress=not ns.no_progress, checkpoint_dir=ns.checkpoint_dir, device=ns.device,
                 max_gpu_memory=ns.max_gpu_memory,
                 mode=ns.mode, output_path=ns.output, **fields)
    if ns.json:
        print(json.dumps(video.to_fal(), indent=2))
    else:
        print(f"wrote {os.path.abspath(ns.output)} ({len(video)} frames, {video.mode} mode, seed {video.seed})")
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
