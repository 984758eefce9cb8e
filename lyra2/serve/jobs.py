"""The job queue behind lyra2.fal_client and `lyra2 serve`: one SQLite store and the workers that drain it.

Both the in-process client (an in-memory database) and the server (a file, `DATA_DIR/jobs.sqlite3`) use this
module, so queue positions, logs, cancellation, start timeouts and the error shapes are the same in both.

A job moves IN_QUEUE -> IN_PROGRESS -> COMPLETED (fal's three states); a completed job holds either a result dict
or an error (HTTP status, detail, error_type). Every transition is one transaction, so a job is claimed by one
worker and completed once. After a crash (SIGKILL), `recover()` puts IN_PROGRESS jobs back in the queue (the
dead attempt's partial files are removed) or, after MAX_ATTEMPTS starts, completes them with an error.

Logs are fal's queue logs: `status(with_logs=True)` returns every entry since the job started (cumulative, as
fal's queue status does), each {"message", "level", "timestamp", "source"}."""
import json
import os
import shutil
import sqlite3
import threading
import time
import uuid

#: A job whose run was interrupted (server killed or stopped) this many times is failed, not re-queued again.
MAX_ATTEMPTS = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    app TEXT NOT NULL,
    status TEXT NOT NULL,
    arguments TEXT NOT NULL,
    image BLOB,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    start_deadline REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    priority INTEGER NOT NULL DEFAULT 0,
    worker INTEGER,
    output_path TEXT,
    result TEXT,
    http_status INTEGER,
    error TEXT,
    error_type TEXT,
    inference_time REAL,
    expired INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, priority, seq);
CREATE TABLE IF NOT EXISTS logs (
    job_id TEXT NOT NULL,
    n INTEGER NOT NULL,
    entry TEXT NOT NULL,
    PRIMARY KEY (job_id, n)
);
"""


class JobCancelled(Exception):
    """Raised inside a running job when its cancellation was requested."""


class JobInterrupted(Exception):
    """Raised inside a running job when the server shuts down; the job goes back to the queue."""


def _log_entry(message, level="INFO"):
    now = time.time()
    return {"message": message, "level": level, "source": "lyra2",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1e3) % 1000:03d}Z"}


class JobStore:
    """Jobs in SQLite. `path` is a database file, or ":memory:" for the in-process client.

    All access goes through one lock (SQLite serialises writers anyway; the lock also guards the condition
    variable in-process workers wait on). Worker processes of the server open the same file; they cannot be
    woken across processes, so `claim` re-checks the queue every `poll_s` seconds."""

    def __init__(self, path=":memory:", poll_s=1.0):
        self.path = path
        self.poll_s = float(poll_s)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30.0)
        self._db.row_factory = sqlite3.Row
        if path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # an accepted job survives a power cut, not only a kill
        self._db.executescript(_SCHEMA)
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._extras = {}  # in-process only: per-job options that are not JSON (depth arrays, output paths)

    def close(self):
        with self._lock:
            self._db.close()

    def _tx(self):
        return _Transaction(self._db)

    # ---------------------------------------------------------------- submit / read
    def submit(self, app, arguments, image, *, start_timeout=None, extras=None, priority="normal"):
        """Queues a job; returns (request_id, queue_position). priority "low" runs after every "normal" job
        (fal's X-Fal-Queue-Priority)."""
        request_id = str(uuid.uuid4())
        now = time.time()
        deadline = None if start_timeout is None else now + float(start_timeout)
        with self._lock, self._tx():
            self._db.execute("INSERT INTO jobs (id, app, status, arguments, image, created, start_deadline, "
                             "priority) VALUES (?, ?, 'IN_QUEUE', ?, ?, ?, ?, ?)",
                             (request_id, app, json.dumps(arguments), image, now, deadline,
                              1 if priority == "low" else 0))
            if extras:
                self._extras[request_id] = extras
            position = self._position(request_id)
            self._wake.notify()
        return request_id, position

    def _row(self, request_id):
        return self._db.execute("SELECT * FROM jobs WHERE id = ?", (request_id,)).fetchone()

    def _position(self, request_id):
        """Jobs that run before this one: queued ones ahead of it in (priority, submission) order."""
        row = self._db.execute("SELECT COUNT(*) FROM jobs j, jobs me WHERE me.id = ? AND j.status = 'IN_QUEUE' "
                               "AND (j.priority < me.priority OR (j.priority = me.priority AND j.seq < me.seq))",
                               (request_id,)).fetchone()
        return int(row[0])

    def _logs(self, request_id):
        rows = self._db.execute("SELECT entry FROM logs WHERE job_id = ? ORDER BY n", (request_id,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def _expire_start_deadlines(self):
        now = time.time()
        self._db.execute("UPDATE jobs SET status = 'COMPLETED', image = NULL, finished = ?, http_status = 504, "
                         "error = 'Request timed out before it started (start_timeout)', "
                         "error_type = 'request_timeout' "
                         "WHERE status = 'IN_QUEUE' AND start_deadline IS NOT NULL AND start_deadline < ?",
                         (now, now))

    def exists(self, request_id, app=None):
        with self._lock:
            row = self._db.execute("SELECT app FROM jobs WHERE id = ?", (request_id,)).fetchone()
        return row is not None and (app is None or row[0] == app)

    def status(self, request_id, with_logs=False):
        """fal's queue status JSON for a job, or None when there is no such job."""
        with self._lock:
            with self._tx():
                self._expire_start_deadlines()
            row = self._row(request_id)
            if row is None:
                return None
            out = {"status": row["status"], "request_id": request_id}
            if row["status"] == "IN_QUEUE":
                out["queue_position"] = self._position(request_id)
                out["logs"] = None
                return out
            out["logs"] = self._logs(request_id) if with_logs else None
            if row["status"] == "COMPLETED":
                out["metrics"] = {} if row["inference_time"] is None else {"inference_time": row["inference_time"]}
                if row["error"] is not None:
                    out["error"] = row["error"]
                    out["error_type"] = row["error_type"]
            return out

    def outcome(self, request_id):
        """(http_status, body, error_type) of a job: the result dict (200) once completed, the error otherwise;
        None when there is no such job."""
        with self._lock:
            with self._tx():
                self._expire_start_deadlines()
            row = self._row(request_id)
        if row is None:
            return None
        if row["status"] != "COMPLETED":
            return 400, {"detail": "Request is still in progress"}, None
        if row["error"] is not None:
            detail = row["error"]
            try:  # validation errors keep fal's list-of-problems shape
                parsed = json.loads(detail)
                if isinstance(parsed, list):
                    detail = parsed
            except ValueError:
                pass
            return int(row["http_status"] or 500), {"detail": detail, "error_type": row["error_type"]}, \
                row["error_type"]
        if row["expired"]:
            return 410, {"detail": "The result was removed by the server's retention setting"}, "result_expired"
        return 200, json.loads(row["result"]), None

    def cancel(self, request_id):
        """'CANCELLED' (was queued), 'CANCELLATION_REQUESTED' (running: stops at its next step),
        'ALREADY_COMPLETED', or None when there is no such job."""
        with self._lock, self._tx():
            row = self._row(request_id)
            if row is None:
                return None
            if row["status"] == "COMPLETED":
                return "ALREADY_COMPLETED"
            if row["status"] == "IN_QUEUE":
                self._complete_error(request_id, 400, "Request was cancelled", "request_cancelled")
                return "CANCELLED"
            self._db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (request_id,))
            return "CANCELLATION_REQUESTED"

    # ---------------------------------------------------------------- workers
    def claim(self, timeout, worker=None):
        """The next queued job (priority, then submission order), now IN_PROGRESS and marked as `worker`'s
        (a process id), as a dict; None when none came within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                with self._tx():
                    self._expire_start_deadlines()
                    row = self._db.execute("SELECT * FROM jobs WHERE status = 'IN_QUEUE' "
                                           "ORDER BY priority, seq LIMIT 1").fetchone()
                    if row is not None:
                        self._db.execute("UPDATE jobs SET status = 'IN_PROGRESS', started = ?, worker = ?, "
                                         "attempts = attempts + 1 WHERE id = ?", (time.time(), worker, row["id"]))
                        job = dict(row)
                        job["arguments"] = json.loads(job["arguments"])
                        job["extras"] = self._extras.get(job["id"], {})
                        return job
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._wake.wait(min(left, self.poll_s))  # re-check deadlines (and other processes' submits)

    def set_output_path(self, request_id, path):
        with self._lock, self._tx():
            self._db.execute("UPDATE jobs SET output_path = ? WHERE id = ?", (path, request_id))

    def add_log(self, request_id, entry):
        with self._lock, self._tx():
            n = self._db.execute("SELECT COUNT(*) FROM logs WHERE job_id = ?", (request_id,)).fetchone()[0]
            self._db.execute("INSERT INTO logs (job_id, n, entry) VALUES (?, ?, ?)",
                             (request_id, n, json.dumps(entry)))

    def cancel_requested(self, request_id):
        with self._lock:
            row = self._db.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (request_id,)).fetchone()
        return bool(row and row[0])

    def finish(self, request_id, result, inference_time):
        """Completes a job with its result; returns False (and stores nothing) when a cancel came in meanwhile."""
        with self._lock, self._tx():
            row = self._row(request_id)
            if row is None or row["status"] != "IN_PROGRESS":
                return False
            if row["cancel_requested"]:
                self._complete_error(request_id, 400, "Request was cancelled", "request_cancelled")
                return False
            self._db.execute("UPDATE jobs SET status = 'COMPLETED', image = NULL, finished = ?, result = ?, "
                             "inference_time = ? WHERE id = ?",
                             (time.time(), json.dumps(result), float(inference_time), request_id))
            self._extras.pop(request_id, None)
            return True

    def fail(self, request_id, http_status, detail, error_type):
        """Completes a job with an error. `detail` is a string or fal's list of validation problems."""
        with self._lock, self._tx():
            self._complete_error(request_id, http_status, detail, error_type)

    def _complete_error(self, request_id, http_status, detail, error_type):
        text = detail if isinstance(detail, str) else json.dumps(detail)
        self._db.execute("UPDATE jobs SET status = 'COMPLETED', image = NULL, finished = ?, http_status = ?, "
                         "error = ?, error_type = ? WHERE id = ?",
                         (time.time(), int(http_status), text, error_type, request_id))
        self._extras.pop(request_id, None)

    def requeue(self, request_id, reason):
        """Puts an interrupted IN_PROGRESS job back at its place in the queue (or fails it after MAX_ATTEMPTS)."""
        with self._lock, self._tx():
            self._requeue(request_id, reason)
            self._wake.notify()

    def _requeue(self, request_id, reason):
        row = self._row(request_id)
        if row is None or row["status"] != "IN_PROGRESS":
            return
        _remove_output(row["output_path"])
        n = self._db.execute("SELECT COUNT(*) FROM logs WHERE job_id = ?", (request_id,)).fetchone()[0]
        if row["attempts"] >= MAX_ATTEMPTS:
            msg = f"{reason}; the job was started {row['attempts']} times and is not retried again"
            self._db.execute("INSERT INTO logs (job_id, n, entry) VALUES (?, ?, ?)",
                             (request_id, n, json.dumps(_log_entry(msg, "ERROR"))))
            self._complete_error(request_id, 500, msg, "runner_interrupted")
            return
        self._db.execute("INSERT INTO logs (job_id, n, entry) VALUES (?, ?, ?)",
                         (request_id, n, json.dumps(_log_entry(f"{reason}; the job was re-queued", "WARNING"))))
        self._db.execute("UPDATE jobs SET status = 'IN_QUEUE', started = NULL, output_path = NULL, worker = NULL, "
                         "start_deadline = NULL WHERE id = ?", (request_id,))

    def requeue_worker(self, worker, reason):
        """Re-queues (or fails) the job a dead worker process left IN_PROGRESS; returns how many."""
        with self._lock, self._tx():
            ids = [r[0] for r in self._db.execute("SELECT id FROM jobs WHERE status = 'IN_PROGRESS' AND worker = ?",
                                                  (worker,)).fetchall()]
            for request_id in ids:
                self._requeue(request_id, reason)
        return len(ids)

    def recover(self):
        """At start-up: every job a dead server left IN_PROGRESS is re-queued (or failed); returns how many."""
        with self._lock, self._tx():
            ids = [r[0] for r in self._db.execute("SELECT id FROM jobs WHERE status = 'IN_PROGRESS'").fetchall()]
            for request_id in ids:
                self._requeue(request_id, "the server stopped while this job ran")
        return len(ids)

    def expire_results(self, older_than_s):
        """Removes the videos of jobs completed more than `older_than_s` seconds ago; returns how many."""
        cutoff = time.time() - older_than_s
        with self._lock, self._tx():
            rows = self._db.execute("SELECT id, output_path FROM jobs WHERE status = 'COMPLETED' AND expired = 0 "
                                    "AND result IS NOT NULL AND finished < ?", (cutoff,)).fetchall()
            for row in rows:
                _remove_output(row["output_path"])
                self._db.execute("UPDATE jobs SET expired = 1 WHERE id = ?", (row["id"],))
        return len(rows)

    def counts(self):
        with self._lock:
            rows = self._db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
        return {r[0]: r[1] for r in rows}


class _Transaction:
    def __init__(self, db):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb):
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")


def _remove_output(path):
    """Deletes a job's video (and its own result folder when the server made one for it)."""
    if not path:
        return
    folder = os.path.dirname(path)
    if os.path.basename(os.path.dirname(folder)) == "results" and os.path.isdir(folder):
        shutil.rmtree(folder, ignore_errors=True)
    else:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


class Worker(threading.Thread):
    """Runs queued jobs one at a time. `place_output(request_id, output_path) -> (path, url)` says where a job's
    MP4 goes and the URL its result names; `options` are lyra2's run options (checkpoint_dir, device, mode).
    `render_size` (H, W), when set, renders every job at that size instead of its `resolution` (the operator's
    choice for smoke tests and tiny test checkpoints; each job's log says so)."""

    def __init__(self, store, place_output, options=None, name="lyra2-worker", render_size=None):
        super().__init__(name=name, daemon=True)
        self.render_size = render_size
        self.alive = None  # worker processes: a callable that is False once the server is gone
        self.store = store
        self.place_output = place_output
        self.options = dict(options or {})
        self.stopping = threading.Event()   # finish the current job, take no new one
        self.interrupt = threading.Event()  # stop the current job at its next step and re-queue it
        self.current = None

    def stop(self, interrupt=False):
        self.stopping.set()
        if interrupt:
            self.interrupt.set()

    def run(self):
        self.run_until_stopped()

    def run_until_stopped(self):
        while not self.stopping.is_set():
            if self.alive is not None and not self.alive():
                return
            job = self.store.claim(timeout=0.5, worker=os.getpid())
            if job is None:
                continue
            self.current = job["id"]
            try:
                self.run_job(job)
            finally:
                self.current = None

    def run_job(self, job):
        from .. import api
        from .._core import Lyra2Error
        from ..video import fal_result, file_entry

        request_id = job["id"]
        extras = dict(job["extras"])
        ply_path = extras.pop("ply_path", None)  # lyra2.fal_client's in-process option: the point cloud too
        try:
            path, url = self.place_output(request_id, extras.pop("output_path", None))
            self.store.set_output_path(request_id, path)
        except OSError as e:
            self.store.fail(request_id, 500, f"cannot create the result file ({e})", "internal_error")
            return

        def check_stop():
            if self.interrupt.is_set() or (self.alive is not None and not self.alive()):
                raise JobInterrupted()
            if self.store.cancel_requested(request_id):
                raise JobCancelled()

        options = dict(self.options)
        options.update(extras)
        args = dict(job["arguments"])
        if self.render_size is not None:
            self.store.add_log(request_id, _log_entry(
                f"rendering at {self.render_size[0]}x{self.render_size[1]} (HxW, the render_size / --render-size "
                f"setting) instead of the requested {args['resolution']}", "WARNING"))
            args["resolution"] = tuple(self.render_size)
        t0 = time.perf_counter()
        try:
            check_stop()
            video = api._zoom_validated(job["image"], args, output_path=path, progress=False,
                                        on_log=lambda entry: self.store.add_log(request_id, entry),
                                        check_stop=check_stop, **options)
            result = fal_result(path, video.seed, video.timings, mode=video.mode)
            result["video"]["url"] = url
            if ply_path is not None:
                result["point_cloud"] = file_entry(video.save_ply(ply_path), "application/octet-stream")
            if not self.store.finish(request_id, result, time.perf_counter() - t0):
                _remove_output(path)
        except JobCancelled:
            _remove_output(path)
            self.store.fail(request_id, 400, "Request was cancelled", "request_cancelled")
        except JobInterrupted:
            if self.alive is not None and not self.alive():
                return  # the server died: it re-queues this job when it starts again
            self.store.requeue(request_id, "the server shut down while this job ran")
        except (ValueError, TypeError) as e:
            _remove_output(path)
            self.store.fail(request_id, 422, validation_detail(None, e), "validation_error")
        except Lyra2Error as e:
            _remove_output(path)
            self.store.add_log(request_id, _log_entry(str(e), "ERROR"))
            self.store.fail(request_id, 500, str(e), "runtime_error")
        except Exception as e:  # noqa: BLE001 - a job must never take its worker down; the client is told why
            _remove_output(path)
            self.store.add_log(request_id, _log_entry(f"{type(e).__name__}: {e}", "ERROR"))
            self.store.fail(request_id, 500, f"internal error: {type(e).__name__}: {e}", "internal_error")


class ServerOutputs:
    """Where the server's workers put videos: RESULTS/<random token>/lyra2-zoom-<id>.mp4, served at
    /files/<token>/<name> (the token, 192 random bits, is what keeps other people's results private)."""

    def __init__(self, results_dir):
        self.results_dir = results_dir

    def __call__(self, request_id, _output_path):
        import secrets

        token = secrets.token_urlsafe(24)
        folder = os.path.join(self.results_dir, token)
        os.makedirs(folder, exist_ok=True)
        name = f"lyra2-zoom-{request_id.replace('-', '')[:16]}.mp4"
        return os.path.join(folder, name), f"/files/{token}/{name}"


def validation_detail(field, error, value=None):
    """fal's 422 body shape: [{"loc": ["body", field], "msg", "type"}]. The field is read from lyra2's message
    ("name: ...") when not given."""
    msg = str(error)
    if field is None:
        head = msg.split(":", 1)[0].strip()
        field = head if head.isidentifier() else None
        if field is None and msg.startswith("unknown field "):
            field = msg.split("'")[1] if "'" in msg else None
    item = {"loc": ["body"] + ([field] if field else []), "msg": msg,
            "type": "type_error" if isinstance(error, TypeError) else "value_error"}
    if value is not None:
        item["input"] = value
    return [item]
