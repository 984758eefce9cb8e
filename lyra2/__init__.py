"""lyra2: a C/CUDA inference engine for NVIDIA Lyra 2.0 "zoom".

One image + a prompt -> a camera-controlled, explorable 3D-style video, with the `fal-ai/lyra-2/zoom`
endpoint's arguments and result shape, on your own machine. Without weights it renders a preview.
"""
import os

from . import _openblas_env  # noqa: F401  (must run before _core loads OpenBLAS)
from . import _omp_env  # noqa: F401  (must run before _core loads libgomp)
from . import _core
from ._core import Lyra2Error
from .api import zoom
from . import fal_client
from .fal_client import *  # noqa: F401,F403  (fal_client's names on lyra2: subscribe, run, submit, Queued, ...)
from .video import Video
from .media import read_image, write_video
from .geometry import trajectory
from .warp import forward_warp, rays
from . import io, models, sampling
from . import convert as _convert_module
from .depth import estimate_depth
from .generate import generate
from .reconstruct import Gaussians, reconstruct
from . import testing
from . import memory
from .memory import memory_plan

convert = _convert_module.convert
_omp_env.restore()  # libgomp (loaded with _core) has read its wait policy

__version__ = "0.1.0"


def _emulated_card_bytes():
    """The emulated card's size, LYRA2_EMULATED_CUDA_MEMORY (bytes, a K/M/G suffix of 1024s allowed), read as the
    emulated pool reads it (csrc/nn/emu/emu_pool.c card_bytes); 0 = unset (the pool is limited by host memory)."""
    v = os.environ.get("LYRA2_EMULATED_CUDA_MEMORY", "").strip()
    if not v:
        return 0
    unit = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(v[-1].lower(), 1)
    try:
        x = float(v[:-1] if unit > 1 else v)
    except ValueError:
        return 0
    return int(x * unit) if x > 0 else 0


def backends():
    """What this build can run: {"cpu": True, "cuda": bool, "cuda_compiled": bool, "emulated": bool,
    "cuda_error": str | None, "cuda_emulation_build": bool, "devices": [{"index", "name", "memory_bytes"}] (the emulated
    device's memory_bytes: LYRA2_EMULATED_CUDA_MEMORY when set, else the host's memory),
    "cuda_fallbacks": {kind: {"count", "first"}}, "cblas": bool}.
    "cuda" is True when the build has the CUDA part and a GPU is usable, or when the emulated device is on
    (``LYRA2_EMULATED_CUDA=1``: device="cuda" then runs the CPU kernels behind a separate memory pool that behaves
    like a GPU, see ``lyra2.testing.emulated_cuda_stats``); "emulated" says which. Otherwise "cuda_error" says why
    not (no CUDA part in the build, or the CUDA error with the driver's and runtime's versions).
    "cuda_fallbacks" counts the calls, since the process started, that the CUDA backend ran on a slow reference
    kernel ("gemm": cuBLASLt had no algorithm; "attention": outside the fused kernel), with the first case.
    "cuda_emulation_build" is True in the CUDA emulation build (``LYRA2_CUDA_EMU=1`` at build time): its one
    device runs the CUDA backend's own kernels on the CPU, thread by thread, for testing."""
    info = _core.build_info()
    emulated = bool(info["emulated_cuda"])
    if emulated:
        devices = [{"index": 0, "name": "emulated CUDA device (CPU kernels, LYRA2_EMULATED_CUDA=1)",
                    "memory_bytes": _emulated_card_bytes() or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")}]
    else:
        devices = [{"index": i, "name": n, "memory_bytes": b} for i, n, b in _core.cuda_devices()]
    fallbacks = {k: {"count": n, "first": first} for k, (n, first) in _core.cuda_fallbacks().items()}
    return {
        "cpu": True,
        "cuda": bool(emulated or (info["cuda"] and devices)),
        "cuda_compiled": bool(info["cuda"]),
        "emulated": emulated,
        "cuda_error": None if devices else _core.cuda_unavailable(),
        "cuda_emulation_build": bool(info["cuda_emulation_build"]),
        "devices": devices,
        "cuda_fallbacks": fallbacks,
        "cblas": bool(info["cblas"]),
    }


__all__ = ["Lyra2Error", "Video", "backends", "zoom", "fal_client", *fal_client.__all__,
           "read_image", "write_video", "trajectory", "forward_warp", "rays", "io", "models", "sampling", "convert", "estimate_depth", "generate", "testing",
           "reconstruct", "Gaussians", "memory", "memory_plan", "__version__"]
