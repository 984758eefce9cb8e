"""Progress reporting: a text bar on a TTY, and fal-style log entries for on_queue_update."""
import sys
import time


class Progress:
    """Collects log entries and stage progress for one run.

    `bar`: draw a progress bar on stderr (only when stderr is a TTY). `on_log(entry)`: called with each fal-style
    log entry {"message", "level", "timestamp", "source"}. `check_stop()`: called at every log entry and progress
    step (between network evaluations in generate mode); an exception it raises stops the run there (the queue
    server and lyra2.fal_client cancel jobs this way)."""

    def __init__(self, bar=True, on_log=None, check_stop=None):
        self.bar = bool(bar) and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
        self.on_log = on_log
        self.check_stop = check_stop
        self.logs = []
        self._last_draw = 0.0

    def log(self, message, level="INFO"):
        if self.check_stop is not None:
            self.check_stop()
        entry = {
            "message": str(message),
            "level": level,
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1e3) % 1000:03d}Z",
            "source": "lyra2",
        }
        self.logs.append(entry)
        if self.bar:
            sys.stderr.write("\r\033[K")
            sys.stderr.write(f"lyra2: {entry['message']}\n")
        if self.on_log is not None:
            self.on_log(entry)

    def update(self, stage, done, total):
        """Reports `done` of `total` units of `stage` (drawn at most 10 times a second)."""
        if self.check_stop is not None:
            self.check_stop()
        if not self.bar:
            return
        now = time.monotonic()
        if done < total and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        width = 30
        filled = int(width * done / max(total, 1))
        sys.stderr.write(f"\r\033[K{stage} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()
