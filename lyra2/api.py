"""lyra2.zoom: the main job as a Python call."""
import time
import warnings

from .fields import check_options, validate
from ._core import Lyra2Error


def zoom(image, prompt, *, zoom_direction="in", num_frames=81, zoom_in_trajectory="orbit_horizontal",
         zoom_in_strength=0.5, zoom_out_trajectory="horizontal_zoom", zoom_out_strength=1.5, resolution="480p",
         use_dmd=True, guidance_scale=5.0, num_inference_steps=28, frames_per_second=16, seed=None,
         checkpoint_dir=None, device="auto", mode="auto", output_path=None, progress=True, depth=None,
         max_gpu_memory=None, reconstruct=False, ply_path=None, dit_dtype="bf16"):
    """One image + a prompt -> a camera-controlled video (lyra2.Video).

    `image`: http(s)/file:// URL, data: URI, local path (str or pathlib.Path), bytes, or a uint8 array (H, W, 3)
    or (H, W, 4). The endpoint fields keep the endpoint's names, defaults and ranges. lyra2-only options:
      checkpoint_dir  converted weights folder (default $LYRA2_CHECKPOINT_DIR)
      device          "auto" | "cpu" | "cuda"
      mode            "auto" (generate when a Lyra-2 checkpoint is found, else preview with a warning),
                      "preview" (forward-warped input + classical hole filling; no weights needed), "generate"
      output_path     also write the MP4 there
      progress        progress bar on a TTY
      depth           float (H, W) depth of the input at the output resolution (preview and trajectories use it)
      max_gpu_memory  GPU memory budget in GB (1e9 bytes): the run's memory plan (lyra2.memory_plan: what is
                      resident, which DiT blocks stream, the expected peak) goes to the logs; a budget below the
                      plan's minimum is a ValueError naming it
      dit_dtype       "bf16" (the checkpoint's weights) or "fp8": the DiT's attention-block Linears as e4m3 with
                      per-channel and per-token scales, about half the DiT's memory (docs/PRECISION.md); the
                      LoRAs are merged for the run's use_dmd; on the CPU this runs the fp8 CPU reference
      reconstruct     also lift the video to 3D Gaussian splats (lyra2.reconstruct with the run's cameras and the
                      folder's DA3 GS head): video.gaussians
      ply_path        also write the run's point cloud there (Video.save_ply; video.to_fal() then has a
                      "point_cloud" file entry)
    """
    fields = dict(prompt=prompt, zoom_direction=zoom_direction, num_frames=num_frames,
                  zoom_in_trajectory=zoom_in_trajectory, zoom_in_strength=zoom_in_strength,
                  zoom_out_trajectory=zoom_out_trajectory, zoom_out_strength=zoom_out_strength,
                  resolution=resolution, use_dmd=use_dmd, guidance_scale=guidance_scale,
                  num_inference_steps=num_inference_steps, frames_per_second=frames_per_second, seed=seed)
    if image is None:
        raise ValueError("image: this argument is required (URL, data: URI, path, bytes or uint8 array)")
    args = validate(fields, require_image=False)
    if not isinstance(reconstruct, bool):
        raise TypeError(f"reconstruct: expected a bool; got {reconstruct!r}")
    if ply_path is not None:
        from .fal_client import _check_ply_path

        _check_ply_path(ply_path)  # before the run, not after it
    video = _zoom_validated(image, args, checkpoint_dir=checkpoint_dir, device=device, mode=mode,
                            output_path=output_path, progress=progress, depth=depth, max_gpu_memory=max_gpu_memory,
                            reconstruct=reconstruct, dit_dtype=dit_dtype)
    if ply_path is not None:
        video.save_ply(ply_path)
    return video


def _zoom_validated(image, args, *, checkpoint_dir=None, device="auto", mode="auto", output_path=None,
                    progress=True, on_log=None, depth=None, max_gpu_memory=None, check_stop=None,
                    reconstruct=False, dit_dtype="bf16"):
    from . import checkpoint
    from .memory import check_dit_dtype, check_max_gpu_memory
    from .progress import Progress

    check_options(device, mode, output_path, progress)
    check_max_gpu_memory(max_gpu_memory)
    check_dit_dtype(dit_dtype)
    folder = checkpoint.resolve_dir(checkpoint_dir)
    if reconstruct:
        from .reconstruct import _weights_from_folder

        _weights_from_folder(folder)  # fail before the run, not after it
    missing = checkpoint.missing_for_generate(folder) if folder else list(checkpoint.FILES.values())
    if mode == "generate" and missing:
        raise Lyra2Error("mode='generate' needs a converted Lyra-2 checkpoint folder; "
                         + (f"{folder!r} lacks {missing}" if folder else
                            "none was given (checkpoint_dir= or $LYRA2_CHECKPOINT_DIR)")
                         + ". Convert the upstream weights with `lyra2 convert SRC DST`.")
    if mode == "auto":
        mode = "preview" if missing else "generate"
        if mode == "preview":
            msg = ("no Lyra-2 checkpoint found: rendering a PREVIEW (the input image forward-warped along the camera "
                   "path, holes filled classically), not a generated video. Download nvidia/Lyra-2.0, run "
                   "`lyra2 convert SRC DST` and pass checkpoint_dir=DST (or set LYRA2_CHECKPOINT_DIR) to generate.")
            warnings.warn(msg, stacklevel=3)
    if device == "cuda":
        from . import backends

        if not backends()["cuda"]:
            raise Lyra2Error("device='cuda': this build has no usable CUDA GPU "
                             f"(lyra2.backends() = {backends()})")
    report = Progress(bar=progress, on_log=on_log, check_stop=check_stop)
    if mode == "generate":
        from .generate import run_generate

        video = run_generate(image, args, checkpoint_folder=folder, device=device, report=report, depth=depth,
                             max_gpu_memory=max_gpu_memory, dit_dtype=dit_dtype)
    else:
        from .preview import run_preview

        video = run_preview(image, args, report=report, depth=depth, checkpoint_folder=folder)
    if output_path is not None:
        video.save(output_path)
    if reconstruct:
        from .reconstruct import reconstruct as lift

        t = time.perf_counter()
        report.log(f"reconstruct: 3D Gaussians from {len(video)} frames")
        video.gaussians = lift(video, checkpoint_dir=folder, device=device)
        video.timings["reconstruct_s"] = time.perf_counter() - t
    return video
