"""Drop-ins for `fal_client.subscribe` / `fal_client.run` on the `fal-ai/lyra-2/zoom` application.

The status objects handed to `on_queue_update` have the shapes of fal_client's `Queued`, `InProgress` and
`Completed`, so callbacks written for fal (`isinstance(update, lyra2.InProgress)`, `update.logs`) work."""
from dataclasses import dataclass, field
from typing import List, Optional

from .fields import APPLICATION, KNOWN_APPLICATIONS, validate


@dataclass
class Queued:
    position: int = 0


@dataclass
class InProgress:
    logs: Optional[List[dict]] = None


@dataclass
class Completed:
    logs: Optional[List[dict]] = None
    metrics: dict = field(default_factory=dict)


def _check_application(application):
    if not isinstance(application, str):
        raise TypeError(f"application: expected a string, one of {list(KNOWN_APPLICATIONS)}; got {application!r}")
    if application.strip("/") not in KNOWN_APPLICATIONS:
        raise ValueError(f"application: {application!r} is not known; lyra2 serves {list(KNOWN_APPLICATIONS)}")


def subscribe(application, arguments, *, with_logs=False, on_queue_update=None, **options):
    """Runs the zoom job locally and returns the endpoint's result dict
    {"video": {"url", "content_type", "file_name", "file_size"}, "seed", "timings"}.

    `on_queue_update(update)` receives Queued, then InProgress (with the new log entries when with_logs=True,
    else logs=None), then Completed. Extra keyword options (lyra2-only): checkpoint_dir, device, mode,
    output_path, progress, depth, ply_path (also write the point cloud there; the result gains a "point_cloud"
    file entry). Without output_path the MP4 goes to $LYRA2_OUTPUT_DIR (default
    <tmp>/lyra2-outputs) and stays there, like a hosted result URL: delete it when you are done with it."""
    _check_application(application)
    if on_queue_update is not None and not callable(on_queue_update):
        raise TypeError("on_queue_update: expected a callable or None")
    if not isinstance(with_logs, bool):
        raise TypeError(f"with_logs: expected a bool; got {with_logs!r}")
    allowed = {"checkpoint_dir", "device", "mode", "output_path", "progress", "depth", "ply_path"}
    for k in options:
        if k not in allowed:
            raise TypeError(f"subscribe() got an unexpected keyword argument {k!r}; lyra2 options are {sorted(allowed)}")
    args = validate(arguments)
    from .api import _zoom_validated

    logs = []

    def on_log(entry):
        logs.append(entry)
        if on_queue_update is not None:
            on_queue_update(InProgress(logs=[entry] if with_logs else None))

    if on_queue_update is not None:
        on_queue_update(Queued(position=0))
    options.setdefault("progress", False)
    ply_path = options.pop("ply_path", None)
    if ply_path is not None:
        from .scene3d import _check_path

        _check_path(ply_path, "ply_path")
    video = _zoom_validated(args["image_url"], args, on_log=on_log, **options)
    if ply_path is not None:
        video.save_ply(ply_path)
    result = video.to_fal()
    if on_queue_update is not None:
        on_queue_update(Completed(logs=logs if with_logs else None, metrics={"inference_time": sum(video.timings.values())}))
    return result


def run(application, arguments, **options):
    """Like subscribe, without status updates (fal_client.run)."""
    return subscribe(application, arguments, **options)


__all__ = ["APPLICATION", "Queued", "InProgress", "Completed", "subscribe", "run"]
