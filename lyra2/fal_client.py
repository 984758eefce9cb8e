"""fal_client's surface for the `fal-ai/lyra-2/zoom` queue endpoint, run in this process.

`import lyra2.fal_client as fal_client` and a script written for fal (1.0.x) runs here: the same names,
signatures and types (subscribe/run/submit and their _async twins, status/result/cancel, Sync/AsyncRequestHandle,
Sync/AsyncClient, Status/Queued/InProgress/Completed, encode*/upload*, FalClientError/FalClientHTTPError/
FalClientTimeoutError). Jobs go through the same queue as `lyra2 serve` (lyra2/serve/jobs.py), in memory, with one
worker thread per client, so the semantics are the server's:

* subscribe = submit, then on_enqueue(request_id), then one on_queue_update per poll (every `interval` s) until
  Completed, then the result. Events repeat between changes, as with fal.
* Logs (with_logs=True) are cumulative, as fal's queue status returns them: every InProgress/Completed carries all
  entries since the job started ({"message", "level", "timestamp", "source"}); print `logs[len(seen):]` for the
  new ones. with_logs=False gives logs=None.
* Invalid arguments and unreadable images are refused at submit with FalClientHTTPError (status 422, fal's
  `[{"loc", "msg", "type"}]` detail; each msg names the field, the value and what is allowed). The error class
  also derives from ValueError and TypeError, so lyra2's own `except ValueError` keeps working.
* A failed job completes with Completed.error/error_type; result() then raises FalClientHTTPError (422 bad input,
  500 run failure, 400 cancelled, 504 start_timeout passed). client_timeout raises FalClientTimeoutError and
  cancels the job. cancel() stops a running job at its next step and removes its file.
* Results: the endpoint's dict plus "mode" ("generate" | "preview") and, for a preview, a "preview" note. The video
  URL is a file:// URL in $LYRA2_OUTPUT_DIR (kept until you delete it); `lyra2 serve` gives https:// URLs.
* upload*/encode* return data: URIs (nothing is sent anywhere). realtime/stream/ws_connect and CDN storage
  settings have no local meaning and raise FalClientError saying so.
"""
from __future__ import annotations

import asyncio
import base64
import inspect
import io
import mimetypes
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from .fields import KNOWN_APPLICATIONS, validate

DEFAULT_QUEUE_POLL_INTERVAL = 0.1
_LYRA2_OPTIONS = ("checkpoint_dir", "device", "mode", "output_path", "depth", "ply_path")


# ------------------------------------------------------------------------------------------------ errors

class FalClientError(Exception):
    pass


@dataclass
class FalClientHTTPError(FalClientError):
    """fal's HTTP error: `message` (the response's detail: a string, or for validation errors fal's list of
    {"loc", "msg", "type"}), `status_code`, `response_headers`, `response` (None in process), `error_type`."""
    message: Any
    status_code: int
    response_headers: dict = field(default_factory=dict)
    response: Any = None
    error_type: Optional[str] = None

    def __str__(self) -> str:
        if isinstance(self.message, list):
            return "; ".join(str(m.get("msg", m)) if isinstance(m, dict) else str(m) for m in self.message)
        return f"{self.message}"


class LocalRequestError(FalClientHTTPError, ValueError, TypeError):
    """A request the local endpoint refused (bad application, field or image): a FalClientHTTPError like fal's
    422/404, and a ValueError/TypeError like the rest of lyra2's input checks."""

    def __init__(self, message, status_code=422, error_type=None):
        FalClientHTTPError.__init__(self, message, status_code, {}, None, error_type)

    __str__ = FalClientHTTPError.__str__
    __hash__ = object.__hash__


@dataclass
class FalClientTimeoutError(FalClientError, TimeoutError):
    timeout: float
    request_id: Optional[str] = None

    def __str__(self) -> str:
        if self.request_id is None:
            return f"Request timed out after {self.timeout} seconds"
        return f"Request {self.request_id} timed out after {self.timeout} seconds"


def _not_local(what):
    raise FalClientError(f"{what} is not available in lyra2: it needs fal's hosted platform (realtime/streaming "
                         "runners, CDN storage, tokens); lyra2 serves the queue endpoint fal-ai/lyra-2/zoom only")


# ------------------------------------------------------------------------------------------------ statuses

@dataclass
class Status:
    ...


@dataclass
class Queued(Status):
    """Waiting in the queue; `position` is 0-indexed (0 = next to run)."""
    position: int


@dataclass
class InProgress(Status):
    """Running; `logs` holds every log entry since the job started when asked with_logs, else None."""
    logs: Optional[list] = field()


@dataclass
class Completed(Status):
    """Done; `error`/`error_type` are set when the job failed (or was cancelled)."""
    logs: Optional[list] = field()
    metrics: dict = field()
    error: Optional[str] = field(default=None)
    error_type: Optional[str] = field(default=None)


def parse_status(data) -> Status:
    """fal's status JSON -> Queued / InProgress / Completed."""
    if data["status"] == "IN_QUEUE":
        return Queued(position=data["queue_position"])
    if data["status"] == "IN_PROGRESS":
        return InProgress(logs=data["logs"])
    if data["status"] == "COMPLETED":
        return Completed(logs=data["logs"], metrics=data.get("metrics", {}), error=data.get("error"),
                         error_type=data.get("error_type"))
    raise ValueError(f"Unknown status: {data['status']}")


# ------------------------------------------------------------------------------------------------ the local queue

def _check_application(application, path=""):
    if not isinstance(application, str):
        raise TypeError(f"application: expected a string, one of {list(KNOWN_APPLICATIONS)}; got {application!r}")
    app = application.strip("/")
    if path:
        app += "/" + str(path).strip("/")
    if app not in KNOWN_APPLICATIONS:
        raise LocalRequestError(f"application: {app!r} is not known; lyra2 serves {list(KNOWN_APPLICATIONS)}",
                                404, "not_found")
    return app


def _check_start_timeout(start_timeout):
    if start_timeout is None:
        return None
    try:
        value = float(start_timeout)
    except (TypeError, ValueError):
        raise ValueError(f"Timeout must be a number, got {start_timeout}") from None
    if value <= 1:  # fal_client's MIN_REQUEST_TIMEOUT_SECONDS
        raise ValueError("Timeout must be greater than 1 seconds")
    return value


def _validated_job(arguments):
    """(validated arguments, image bytes) or LocalRequestError(422) naming the field."""
    from .serve.jobs import validation_detail
    from .media import load_image_bytes, read_image
    from ._core import Lyra2Error

    try:
        args = validate(arguments)
    except (ValueError, TypeError) as e:
        raise LocalRequestError(validation_detail(None, e), 422, "validation_error") from None
    try:
        data = load_image_bytes(args["image_url"])
        read_image(data)  # refuse a non-image now, as the server does, not minutes later in the worker
    except (ValueError, TypeError, Lyra2Error) as e:
        raise LocalRequestError(validation_detail("image_url", f"image_url: {e}"), 422, "validation_error") from None
    return args, data


def _check_render_size(size):
    if size is None:
        return None
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in size)):
        raise TypeError(f"render_size: expected None or an (H, W) pair of ints; got {size!r}")
    if not all(8 <= v <= 4096 for v in size):
        raise ValueError(f"render_size: {tuple(size)} is out of range; each side must be in 8..4096")
    return tuple(size)


class _LocalQueue:
    """A JobStore in memory with one worker thread, started on first use."""

    def __init__(self, options, render_size=None):
        self.options = options
        self.render_size = render_size
        self._lock = threading.Lock()
        self.store = None
        self.worker = None

    def get(self):
        with self._lock:
            if self.store is None:
                from .serve.jobs import JobStore, Worker
                from .video import default_output_path
                from pathlib import Path

                def place(request_id, output_path):
                    path = os.path.abspath(os.fspath(output_path)) if output_path else default_output_path()
                    return path, Path(path).as_uri()

                self.store = JobStore(":memory:")
                self.worker = Worker(self.store, place, self.options, name="lyra2-fal-client-worker",
                                     render_size=self.render_size)
                self.worker.start()
            return self.store


def _status_json(store, request_id, with_logs):
    data = store.status(request_id, with_logs)
    if data is None:
        raise LocalRequestError(f"request_id: {request_id!r} is not a known request", 404, "not_found")
    return data


def _outcome(store, request_id):
    out = store.outcome(request_id)
    if out is None:
        raise LocalRequestError(f"request_id: {request_id!r} is not a known request", 404, "not_found")
    code, body, error_type = out
    if code != 200:
        headers = {"x-fal-error-type": error_type} if error_type else {}
        if error_type == "request_timeout":
            headers["x-fal-request-timeout-type"] = "user"
        raise FalClientHTTPError(body.get("detail"), code, headers, None, error_type)
    return body


# ------------------------------------------------------------------------------------------------ handles

@dataclass(frozen=True)
class _BaseRequestHandle:
    request_id: str
    response_url: str = field(repr=False)
    status_url: str = field(repr=False)
    cancel_url: str = field(repr=False)

    def _parse_status(self, data) -> Status:
        return parse_status(data)


def _urls(application, request_id):
    owner, alias = application.split("/")[:2]
    base = f"lyra2://local/{owner}/{alias}/requests/{request_id}"
    return dict(response_url=base, status_url=base + "/status", cancel_url=base + "/cancel")


@dataclass(frozen=True)
class SyncRequestHandle(_BaseRequestHandle):
    client: Any = field(repr=False, default=None)

    @classmethod
    def from_request_id(cls, client, application: str, request_id: str) -> "SyncRequestHandle":
        _check_application(application)
        return cls(request_id=request_id, client=client, **_urls(application, request_id))

    def _store(self):
        return self.client._queue.get()

    def status(self, *, with_logs: bool = False) -> Status:
        return parse_status(_status_json(self._store(), self.request_id, with_logs))

    def iter_events(self, *, with_logs: bool = False, interval: float = DEFAULT_QUEUE_POLL_INTERVAL):
        while True:
            status = self.status(with_logs=with_logs)
            yield status
            if isinstance(status, Completed):
                break
            time.sleep(interval)

    def get(self, *, interval: float = DEFAULT_QUEUE_POLL_INTERVAL):
        for _ in self.iter_events(with_logs=False, interval=interval):
            continue
        return _outcome(self._store(), self.request_id)

    def cancel(self) -> None:
        state = self._store().cancel(self.request_id)
        if state is None:
            raise LocalRequestError(f"request_id: {self.request_id!r} is not a known request", 404, "not_found")
        if state == "ALREADY_COMPLETED":
            raise FalClientHTTPError("Request already completed", 400, {}, None, "already_completed")


@dataclass(frozen=True)
class AsyncRequestHandle(_BaseRequestHandle):
    client: Any = field(repr=False, default=None)

    @classmethod
    def from_request_id(cls, client, application: str, request_id: str) -> "AsyncRequestHandle":
        _check_application(application)
        return cls(request_id=request_id, client=client, **_urls(application, request_id))

    def _sync(self):
        return SyncRequestHandle(self.request_id, self.response_url, self.status_url, self.cancel_url, self.client)

    async def status(self, *, with_logs: bool = False) -> Status:
        return self._sync().status(with_logs=with_logs)

    async def iter_events(self, *, with_logs: bool = False, interval: float = DEFAULT_QUEUE_POLL_INTERVAL):
        while True:
            status = await self.status(with_logs=with_logs)
            yield status
            if isinstance(status, Completed):
                break
            await asyncio.sleep(interval)

    async def get(self, *, interval: float = DEFAULT_QUEUE_POLL_INTERVAL):
        async for _ in self.iter_events(with_logs=False, interval=interval):
            continue
        return _outcome(self.client._queue.get(), self.request_id)

    async def cancel(self) -> None:
        self._sync().cancel()


# ------------------------------------------------------------------------------------------------ clients

def _encode_upload(data, content_type, lifecycle=None, repository=None, fallback_repository=None):
    if lifecycle is not None or repository is not None or fallback_repository is not None:
        _not_local("CDN storage settings (repository, fallback_repository, lifecycle)")
    return encode(data, content_type)


class SyncClient:
    """fal_client.SyncClient, run here. `key` and `default_timeout` are accepted for compatibility (nothing is
    sent over a network). lyra2-only keyword options: checkpoint_dir, device, mode (see lyra2.zoom), and
    render_size=(H, W) to render every job at that size instead of its `resolution` (tiny test checkpoints and
    quick checks; each job's log says so), like `lyra2 serve --render-size`."""

    def __init__(self, key: str | None = None, default_timeout: float = 120.0, *, checkpoint_dir=None,
                 device="auto", mode="auto", render_size=None):
        self.key = key
        self.default_timeout = default_timeout
        self._options = {"checkpoint_dir": checkpoint_dir, "device": device, "mode": mode}
        self._queue = _LocalQueue(self._options, _check_render_size(render_size))

    def _submit(self, application, arguments, path="", start_timeout=None, extras=None, priority=None):
        app = _check_application(application, path)
        start_timeout = _check_start_timeout(start_timeout)
        args, image = _validated_job(arguments)
        from .fields import check_options

        merged = {**self._options, **(extras or {})}
        check_options(merged["device"], merged["mode"], merged.get("output_path"), False)
        if merged.get("ply_path") is not None:  # checked before the run, not after it
            _check_ply_path(merged["ply_path"])
        request_id, _ = self._queue.get().submit(app, args, image, start_timeout=start_timeout, extras=extras,
                                                 priority=priority or "normal")
        return request_id

    def run(self, application: str, arguments, *, method: str = "POST", path: str = "", timeout=None,
            start_timeout=None, hint: str | None = None, headers: dict = {}):
        """Runs the job and returns its result; `timeout` (seconds) raises FalClientTimeoutError and cancels."""
        if method.upper() != "POST":
            raise LocalRequestError(f"method: {method!r} is not allowed; the endpoint takes POST", 405)
        handle = self.submit(application, arguments, path=path, start_timeout=start_timeout)
        return _wait(handle, timeout, DEFAULT_QUEUE_POLL_INTERVAL)

    def submit(self, application: str, arguments, *, path: str = "", hint: str | None = None,
               webhook_url: str | None = None, priority=None, headers: dict = {}, start_timeout=None,
               _extras=None) -> SyncRequestHandle:
        if webhook_url is not None:
            _not_local("webhook_url")
        if priority is not None and priority not in ("normal", "low"):
            raise ValueError(f"Priority must be one of ('normal', 'low'), got '{priority}'")
        request_id = self._submit(application, arguments, path, start_timeout, _extras, priority)
        return SyncRequestHandle.from_request_id(self, application, request_id)

    def subscribe(self, application: str, arguments, *, path: str = "", hint: str | None = None,
                  with_logs: bool = False, interval: float = DEFAULT_QUEUE_POLL_INTERVAL, on_enqueue=None,
                  on_queue_update=None, priority=None, headers: dict = {}, start_timeout=None,
                  client_timeout=None, _extras=None):
        _check_callbacks(with_logs, on_enqueue, on_queue_update)
        if client_timeout is not None and start_timeout is None:
            start_timeout = client_timeout
        handle = self.submit(application, arguments, path=path, priority=priority, start_timeout=start_timeout,
                             _extras=_extras)
        deadline = None if client_timeout is None else time.monotonic() + float(client_timeout)
        try:
            if on_enqueue is not None:
                on_enqueue(handle.request_id)
            if on_queue_update is not None:
                for event in handle.iter_events(with_logs=with_logs, interval=interval):
                    on_queue_update(event)
                    if deadline is not None and time.monotonic() > deadline:
                        raise _Deadline()
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            return _wait(handle, left, interval, reported_timeout=client_timeout)
        except _Deadline:
            _cancel_quietly(handle)
            raise FalClientTimeoutError(timeout=client_timeout, request_id=handle.request_id) from None

    def get_handle(self, application: str, request_id: str) -> SyncRequestHandle:
        return SyncRequestHandle.from_request_id(self, application, request_id)

    def status(self, application: str, request_id: str, *, with_logs: bool = False) -> Status:
        return self.get_handle(application, request_id).status(with_logs=with_logs)

    def result(self, application: str, request_id: str):
        return self.get_handle(application, request_id).get()

    def cancel(self, application: str, request_id: str) -> None:
        self.get_handle(application, request_id).cancel()

    def upload(self, data, content_type: str, file_name: str | None = None, *, repository=None,
               fallback_repository=None, lifecycle=None) -> str:
        """Returns a data: URI of the bytes (lyra2 takes it as image_url; nothing leaves this machine)."""
        return _encode_upload(data, content_type, lifecycle, repository, fallback_repository)

    def upload_file(self, path, *, repository=None, fallback_repository=None, lifecycle=None) -> str:
        if lifecycle is not None or repository is not None or fallback_repository is not None:
            _not_local("CDN storage settings (repository, fallback_repository, lifecycle)")
        return encode_file(path)

    def upload_image(self, image, format: str = "jpeg", *, repository=None, fallback_repository=None,
                     lifecycle=None) -> str:
        if lifecycle is not None or repository is not None or fallback_repository is not None:
            _not_local("CDN storage settings (repository, fallback_repository, lifecycle)")
        return encode_image(image, format)

    def stream(self, *args, **kwargs):
        _not_local("stream()")

    def realtime(self, *args, **kwargs):
        _not_local("realtime()")

    def ws_connect(self, *args, **kwargs):
        _not_local("ws_connect()")


class _Deadline(Exception):
    pass


def _cancel_quietly(handle):
    try:
        handle.cancel()
    except FalClientError:
        pass


def _wait(handle, timeout, interval, reported_timeout=None):
    """handle.get() with an overall timeout (None: unbounded); on timeout the job is cancelled."""
    deadline = None if timeout is None else time.monotonic() + float(timeout)
    while True:
        status = handle.status()
        if isinstance(status, Completed):
            return handle.get(interval=interval)
        if deadline is not None and time.monotonic() > deadline:
            _cancel_quietly(handle)
            raise FalClientTimeoutError(timeout=reported_timeout if reported_timeout is not None else timeout,
                                        request_id=handle.request_id)
        time.sleep(interval)


def _check_callbacks(with_logs, on_enqueue, on_queue_update):
    if not isinstance(with_logs, bool):
        raise TypeError(f"with_logs: expected a bool; got {with_logs!r}")
    for name, fn in (("on_enqueue", on_enqueue), ("on_queue_update", on_queue_update)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name}: expected a callable or None; got {fn!r}")


class AsyncClient:
    """fal_client.AsyncClient, run here (the job runs on the client's worker thread; the event loop stays free).
    Awaitable callbacks are awaited."""

    def __init__(self, key: str | None = None, default_timeout: float = 120.0, *, checkpoint_dir=None,
                 device="auto", mode="auto", render_size=None):
        self._sync = SyncClient(key, default_timeout, checkpoint_dir=checkpoint_dir, device=device, mode=mode,
                                render_size=render_size)
        self._queue = self._sync._queue
        self.key = key
        self.default_timeout = default_timeout

    async def run(self, application: str, arguments, *, method: str = "POST", path: str = "", timeout=None,
                  start_timeout=None, hint: str | None = None, headers: dict = {}):
        if method.upper() != "POST":
            raise LocalRequestError(f"method: {method!r} is not allowed; the endpoint takes POST", 405)
        handle = await self.submit(application, arguments, path=path, start_timeout=start_timeout)
        try:
            return await asyncio.wait_for(handle.get(), timeout)
        except asyncio.TimeoutError:
            await handle.cancel()
            raise FalClientTimeoutError(timeout=timeout, request_id=handle.request_id) from None

    async def submit(self, application: str, arguments, *, path: str = "", hint: str | None = None,
                     webhook_url: str | None = None, priority=None, headers: dict = {}, start_timeout=None,
                     _extras=None) -> AsyncRequestHandle:
        # Image fetch and decode check run off the event loop.
        h = await asyncio.to_thread(self._sync.submit, application, arguments, path=path,
                                    webhook_url=webhook_url, priority=priority, start_timeout=start_timeout,
                                    _extras=_extras)
        return AsyncRequestHandle.from_request_id(self, application, h.request_id)

    async def subscribe(self, application: str, arguments, *, path: str = "", hint: str | None = None,
                        with_logs: bool = False, interval: float = DEFAULT_QUEUE_POLL_INTERVAL, on_enqueue=None,
                        on_queue_update=None, priority=None, headers: dict = {}, start_timeout=None,
                        client_timeout=None, _extras=None):
        _check_callbacks(with_logs, on_enqueue, on_queue_update)
        if client_timeout is not None and start_timeout is None:
            start_timeout = client_timeout
        ref = [None]

        async def go():
            handle = await self.submit(application, arguments, path=path, priority=priority,
                                       start_timeout=start_timeout, _extras=_extras)
            ref[0] = handle
            if on_enqueue is not None:
                r = on_enqueue(handle.request_id)
                if inspect.isawaitable(r):
                    await r
            if on_queue_update is not None:
                async for event in handle.iter_events(with_logs=with_logs, interval=interval):
                    r = on_queue_update(event)
                    if inspect.isawaitable(r):
                        await r
            return await handle.get(interval=interval)

        if client_timeout is None:
            return await go()
        try:
            return await asyncio.wait_for(go(), timeout=client_timeout)
        except asyncio.TimeoutError:
            if ref[0] is not None:
                try:
                    await ref[0].cancel()
                except FalClientError:
                    pass
            raise FalClientTimeoutError(timeout=client_timeout,
                                        request_id=None if ref[0] is None else ref[0].request_id) from None

    async def get_handle(self, application: str, request_id: str) -> AsyncRequestHandle:
        return AsyncRequestHandle.from_request_id(self, application, request_id)

    async def status(self, application: str, request_id: str, *, with_logs: bool = False) -> Status:
        return await (await self.get_handle(application, request_id)).status(with_logs=with_logs)

    async def result(self, application: str, request_id: str):
        return await (await self.get_handle(application, request_id)).get()

    async def cancel(self, application: str, request_id: str) -> None:
        await (await self.get_handle(application, request_id)).cancel()

    async def upload(self, data, content_type: str, file_name: str | None = None, *, repository=None,
                     fallback_repository=None, lifecycle=None) -> str:
        return self._sync.upload(data, content_type, file_name, repository=repository,
                                 fallback_repository=fallback_repository, lifecycle=lifecycle)

    async def upload_file(self, path, *, repository=None, fallback_repository=None, lifecycle=None) -> str:
        return await asyncio.to_thread(self._sync.upload_file, path, repository=repository,
                                       fallback_repository=fallback_repository, lifecycle=lifecycle)

    async def upload_image(self, image, format: str = "jpeg", *, repository=None, fallback_repository=None,
                           lifecycle=None) -> str:
        return self._sync.upload_image(image, format, repository=repository,
                                       fallback_repository=fallback_repository, lifecycle=lifecycle)

    async def stream(self, *args, **kwargs):
        _not_local("stream_async()")
        yield  # pragma: no cover - makes this an async generator like fal's

    def realtime(self, *args, **kwargs):
        _not_local("realtime_async()")

    def ws_connect(self, *args, **kwargs):
        _not_local("ws_connect_async()")


# ------------------------------------------------------------------------------------------------ encode

def encode(data, content_type: str) -> str:
    """A data: URL of the bytes (or UTF-8 text) with the given content type."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return f"data:{content_type};base64,{base64.b64encode(data).decode()}"


def encode_file(path) -> str:
    """A data: URL of a local file, its content type guessed from the name."""
    mime_type, _ = mimetypes.guess_type(os.fspath(path))
    with open(path, "rb") as f:
        return encode(f.read(), mime_type or "application/octet-stream")


def encode_image(image, format: str = "jpeg") -> str:
    """A data: URL of a Pillow image (PIL.Image.Image) saved in `format`."""
    if not hasattr(image, "save"):
        raise TypeError(f"image: expected a PIL.Image.Image; got {type(image).__name__}")
    with io.BytesIO() as buffer:
        image.save(buffer, format=format)
        return encode(buffer.getvalue(), f"image/{format}")


# ------------------------------------------------------------------------------------------------ module level

sync_client = SyncClient()
async_client = AsyncClient()
_option_clients = {}
_option_lock = threading.Lock()


def _check_ply_path(path):
    """ply_path: a str or PathLike ending in .ply in an existing folder -> its absolute path."""
    from .scene3d import _check_path

    path = _check_path(path, "ply_path")
    if not path.lower().endswith(".ply"):
        raise ValueError(f"ply_path: {path!r} must end in .ply")
    return os.path.abspath(path)


def _client_for(options):
    """The module-level client, or one configured with lyra2-only options (checkpoint_dir, device, mode)."""
    unknown = [k for k in options if k not in _LYRA2_OPTIONS]
    if unknown:
        raise TypeError(f"subscribe() got an unexpected keyword argument {unknown[0]!r}; lyra2 options are "
                        f"{sorted(_LYRA2_OPTIONS)}")
    base = {k: options[k] for k in ("checkpoint_dir", "device", "mode") if options.get(k) is not None}
    extras = {k: options[k] for k in ("output_path", "depth", "ply_path") if options.get(k) is not None}
    if not base:
        return sync_client, extras
    key = tuple(sorted((k, os.fspath(v) if isinstance(v, os.PathLike) else v) for k, v in base.items()))
    with _option_lock:
        if key not in _option_clients:
            _option_clients[key] = SyncClient(**base)
        return _option_clients[key], extras


def subscribe(application, arguments, *, path="", hint=None, with_logs=False, interval=DEFAULT_QUEUE_POLL_INTERVAL,
              on_enqueue=None, on_queue_update=None, priority=None, headers={}, start_timeout=None,
              client_timeout=None, **options):
    """fal_client.subscribe, run here; returns the endpoint's result dict. Extra lyra2-only keyword options:
    checkpoint_dir, device, mode, output_path, depth, ply_path (see lyra2.zoom; with ply_path the run's point
    cloud is written there too and the result gains a "point_cloud" file entry, as Video.to_fal())."""
    client, extras = _client_for(options)
    return client.subscribe(application, arguments, path=path, hint=hint, with_logs=with_logs, interval=interval,
                            on_enqueue=on_enqueue, on_queue_update=on_queue_update, priority=priority,
                            headers=headers, start_timeout=start_timeout, client_timeout=client_timeout,
                            _extras=extras)


def run(application, arguments, *, method="POST", path="", timeout=None, start_timeout=None, hint=None,
        headers={}, **options):
    """fal_client.run, run here (no status updates)."""
    client, extras = _client_for(options)
    if method.upper() != "POST":
        raise LocalRequestError(f"method: {method!r} is not allowed; the endpoint takes POST", 405)
    handle = client.submit(application, arguments, path=path, start_timeout=start_timeout, _extras=extras)
    return _wait(handle, timeout, DEFAULT_QUEUE_POLL_INTERVAL)


submit = sync_client.submit
status = sync_client.status
result = sync_client.result
cancel = sync_client.cancel
stream = sync_client.stream
realtime = sync_client.realtime
ws_connect = sync_client.ws_connect
upload = sync_client.upload
upload_file = sync_client.upload_file
upload_image = sync_client.upload_image

run_async = async_client.run
subscribe_async = async_client.subscribe
submit_async = async_client.submit
status_async = async_client.status
result_async = async_client.result
cancel_async = async_client.cancel
stream_async = async_client.stream
realtime_async = async_client.realtime
ws_connect_async = async_client.ws_connect
upload_async = async_client.upload
upload_file_async = async_client.upload_file
upload_image_async = async_client.upload_image

__all__ = [
    "SyncClient", "AsyncClient", "Status", "Queued", "InProgress", "Completed", "FalClientError",
    "FalClientHTTPError", "FalClientTimeoutError", "LocalRequestError", "SyncRequestHandle", "AsyncRequestHandle",
    "run", "subscribe", "submit", "status", "result", "cancel", "stream", "realtime", "ws_connect",
    "run_async", "subscribe_async", "submit_async", "status_async", "result_async", "cancel_async",
    "stream_async", "realtime_async", "ws_connect_async", "upload", "upload_file", "upload_image",
    "upload_async", "upload_file_async", "upload_image_async", "encode", "encode_file", "encode_image",
]
