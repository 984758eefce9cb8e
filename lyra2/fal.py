"""Former home of lyra2's fal drop-ins; they now live in lyra2.fal_client (the whole fal_client surface)."""
from .fal_client import Completed, InProgress, Queued, Status, run, subscribe  # noqa: F401
from .fields import APPLICATION  # noqa: F401

__all__ = ["APPLICATION", "Status", "Queued", "InProgress", "Completed", "subscribe", "run"]
