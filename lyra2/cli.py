"""Command line: `lyra2 zoom IMAGE --prompt TEXT [fields...] -o out.mp4`, `lyra2 reconstruct VIDEO -o scene.ply`,
`lyra2 convert SRC DST` and `lyra2 serve` (your own fal endpoint, lyra2/serve/).

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
    p.add_argument("--dit-dtype", choices=("bf16", "fp8"), default="bf16",
                   help="the DiT's attention-block weights: bf16 as converted, or fp8 e4m3 (per-channel and "
                        "per-token scales; about half the DiT's memory)")
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
                 max_gpu_memory=ns.max_gpu_memory, dit_dtype=ns.dit_dtype, mode=ns.mode, output_path=ns.output,
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
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where DA3, the GS head and the flythrough render run (auto: the GPU when one is usable)")
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
                    chunk_overlap=ns.chunk_overlap, down_ratio=ns.down_ratio, device=ns.device)
    path = g.save_ply(ns.output, prune_border=not ns.no_border_prune, opacity_percentile=ns.opacity_percentile,
                      sh_dc_only=not ns.sh_rest)
    rows = int(g._ply_mask(not ns.no_border_prune, ns.opacity_percentile).sum())
    result = {"ply": path, "ply_rows": rows, "gaussians": len(g), "frames": len(frames)}
    if ns.render is not None:
        result["render"] = g.render_video(ns.render, w2c, K, frames.shape[1:3],
                                          fps=int(np.clip(round(fps or 16), 8, 24)), device=ns.device)
    if ns.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"wrote {path} ({rows} of {len(g)} Gaussians from {len(frames)} frames)")
        if ns.render is not None:
            print(f"wrote {result['render']}")
def _serve_parser(sub):
    p = sub.add_parser(
        "serve", help="run your own fal endpoint: fal's queue protocol over HTTPS for fal_client scripts",
        description="Serve fal-ai/lyra-2/zoom with fal's queue protocol over HTTPS, so unmodified fal_client "
                    "scripts run against this machine. Point a script here with FAL_RUN_HOST=HOST:PORT, "
                    "FAL_QUEUE_RUN_HOST=HOST:PORT/queue, SSL_CERT_FILE=<the certificate> and FAL_KEY=<a key>. "
                    "Jobs live in DATA_DIR/jobs.sqlite3 and survive restarts; videos in DATA_DIR/results. "
                    "Needs the serve extra: pip install 'lyra2[serve]'.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=8443, help="port to listen on (default 8443)")
    p.add_argument("--data-dir", default=os.environ.get("LYRA2_SERVE_DIR", "lyra2-serve-data"),
                   help="folder for the job database, results, TLS pair and generated key "
                        "(default $LYRA2_SERVE_DIR or ./lyra2-serve-data)")
    p.add_argument("--api-key", action="append", default=[], metavar="KEY",
                   help="an accepted API key (clients send 'Authorization: Key KEY', fal_client's FAL_KEY); "
                        "repeatable. Without --api-key/--api-keys-file a random key is generated once into "
                        "DATA_DIR/api_keys and printed")
    p.add_argument("--api-keys-file", default=None, metavar="FILE",
                   help="file with one accepted key per line ('#' starts a comment)")
    p.add_argument("--tls-cert", default=None, metavar="CERT",
                   help="PEM certificate (chain); without --tls-cert/--tls-key a self-signed pair is made once in "
                        "DATA_DIR/tls/cert.pem and key.pem (clients: SSL_CERT_FILE=DATA_DIR/tls/cert.pem)")
    p.add_argument("--tls-key", default=None, metavar="KEY", help="PEM private key of --tls-cert")
    p.add_argument("--workers", type=int, default=None,
                   help="jobs run at once, one worker process each (default: one per visible CUDA GPU, each "
                        "seeing only its GPU; else 1 CPU worker). More workers than GPUs share them round-robin")
    p.add_argument("--max-body-mb", type=float, default=32.0, help="largest request body in MiB (default 32; 413)")
    p.add_argument("--max-image-mb", type=float, default=32.0,
                   help="largest input image (fetched or data: URI) in MiB (default 32; 422)")
    p.add_argument("--fetch-timeout", type=float, default=20.0, help="seconds to fetch an image URL (default 20)")
    p.add_argument("--max-redirects", type=int, default=3, help="redirects followed for an image URL (default 3)")
    p.add_argument("--allow-private-urls", action="store_true",
                   help="allow image URLs on loopback, link-local and private addresses (off: no server-side "
                        "request forgery into your network)")
    p.add_argument("--retention-hours", type=float, default=168.0,
                   help="delete result videos this long after their job completed (default 168 = 7 days; 0 keeps "
                        "them); the result then answers 410")
    p.add_argument("--shutdown-grace", type=float, default=30.0,
                   help="on SIGTERM/SIGINT, seconds running jobs get to finish before they are stopped and "
                        "re-queued for the next start (default 30)")
    p.add_argument("--public-url", default=None,
                   help="base URL clients reach this server at (for result and queue URLs behind a proxy); "
                        "default: from each request's Host header")
    p.add_argument("--checkpoint-dir", default=None, help="converted weights folder (default $LYRA2_CHECKPOINT_DIR)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where workers run the networks (default auto: the worker's GPU when there is one)")
    p.add_argument("--mode", choices=("auto", "preview", "generate"), default="auto",
                   help="auto: generate when the checkpoint folder is complete, else preview (results say so)")
    p.add_argument("--render-size", default=None, metavar="HxW",
                   help="render every job at HxW instead of its resolution (smoke tests, tiny test checkpoints); "
                        "each job's log says so")
    return p


def _read_keys(path):
    with open(path, encoding="utf-8") as f:
        return [line.split("#", 1)[0].strip() for line in f if line.split("#", 1)[0].strip()]


def _run_serve(ns):
    try:
        import aiohttp  # noqa: F401
        import cryptography  # noqa: F401
    except ImportError as e:
        raise ValueError(f"lyra2 serve needs the serve extra ({e.name} is missing): pip install 'lyra2[serve]'")
    from .serve import server, tls

    data_dir = os.path.abspath(ns.data_dir)
    os.makedirs(data_dir, exist_ok=True)
    keys = list(ns.api_key)
    if ns.api_keys_file:
        try:
            keys += _read_keys(ns.api_keys_file)
        except OSError as e:
            raise ValueError(f"--api-keys-file: cannot read {ns.api_keys_file!r} ({e.strerror})") from None
    if any(not k or any(c.isspace() for c in k) for k in keys):
        raise ValueError("--api-key: keys must be non-empty and contain no spaces")
    if not keys:
        key_file = os.path.join(data_dir, "api_keys")
        if not os.path.exists(key_file):
            import secrets

            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32) + "\n")
        keys = _read_keys(key_file)
        print(f"lyra2 serve: no --api-key given; accepted keys are in {key_file} "
              f"(export FAL_KEY=$(head -1 {key_file}))", file=sys.stderr)
    if (ns.tls_cert is None) != (ns.tls_key is None):
        raise ValueError("--tls-cert and --tls-key go together (or neither, for a self-signed pair)")
    if ns.tls_cert is None:
        ns.tls_cert, ns.tls_key = tls.self_signed(os.path.join(data_dir, "tls"), [ns.host])
    context = tls.server_context(ns.tls_cert, ns.tls_key)
    from . import backends

    info = backends()
    gpu_ids = [d["index"] for d in info["devices"]] if info["cuda"] else []
    workers = ns.workers if ns.workers is not None else max(1, len(gpu_ids))
    if not 1 <= workers <= 64:
        raise ValueError(f"--workers: {workers} is out of range; expected 1 to 64")
    if not 1 <= ns.port <= 65535:
        raise ValueError(f"--port: {ns.port} is out of range; expected 1 to 65535")
    for name in ("max_body_mb", "max_image_mb", "fetch_timeout"):
        if not getattr(ns, name) > 0:
            raise ValueError(f"--{name.replace('_', '-')}: {getattr(ns, name)} must be positive")
    render_size = server.parse_size(ns.render_size) if ns.render_size else None
    config = server.Config(
        data_dir, host=ns.host, port=ns.port, api_keys=keys, tls_cert=ns.tls_cert, tls_key=ns.tls_key,
        workers=workers, max_body_bytes=int(ns.max_body_mb * (1 << 20)),
        max_image_bytes=int(ns.max_image_mb * (1 << 20)), fetch_timeout_s=ns.fetch_timeout,
        max_redirects=max(0, ns.max_redirects), allow_private_urls=ns.allow_private_urls,
        retention_hours=max(0.0, ns.retention_hours), shutdown_grace_s=max(0.0, ns.shutdown_grace),
        public_url=ns.public_url, checkpoint_dir=ns.checkpoint_dir, device=ns.device, mode=ns.mode,
        render_size=render_size, gpu_ids=gpu_ids)
    server.serve(config, context, announce=lambda text: print(text, file=sys.stderr, flush=True))
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
    _serve_parser(sub)
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
        if ns.command == "serve":
            return _run_serve(ns)
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
