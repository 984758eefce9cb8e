"""`lyra2 serve`: fal's queue protocol over HTTPS on aiohttp, so unmodified fal_client scripts run against it.

fal_client builds its URLs from two host variables read at import time:

  FAL_RUN_HOST=HOST:PORT              run():    POST https://HOST:PORT/fal-ai/lyra-2/zoom  (waits, returns result)
  FAL_QUEUE_RUN_HOST=HOST:PORT/queue  submit(): POST https://HOST:PORT/queue/fal-ai/lyra-2/zoom
                                      status:   GET  .../queue/fal-ai/lyra-2/requests/ID/status?logs=true
                                      result:   GET  .../queue/fal-ai/lyra-2/requests/ID
                                      cancel:   PUT  .../queue/fal-ai/lyra-2/requests/ID/cancel

(fal tells the two apart by host name, queue.fal.run vs fal.run; one local port tells them apart by the /queue
prefix.) Every endpoint but /health, /openapi.json and /files/ needs `Authorization: Key <key>`. Result videos
are served at /files/<random token>/<name>.mp4 (no key: like fal's CDN URLs, the token is the secret).
"""
import asyncio
import hmac
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

from aiohttp import web

from ..fields import APPLICATION, validate
from .fetch import ImageSourceError, fetch_url
from .jobs import JobStore, validation_detail
from . import openapi

_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{20,64}$")
_FILE_RE = re.compile(r"^lyra2-zoom-[0-9a-f]{8,32}\.mp4$")
_REQUEST_ID_RE = re.compile(r"^[0-9a-f-]{36}$")


class Config:
    """Server settings (the command line fills these; see lyra2/cli.py `serve`)."""

    def __init__(self, data_dir, *, host="127.0.0.1", port=8443, api_keys=(), tls_cert=None, tls_key=None,
                 workers=1, max_body_bytes=32 << 20, max_image_bytes=32 << 20, fetch_timeout_s=20.0,
                 max_redirects=3, allow_private_urls=False, retention_hours=168.0, shutdown_grace_s=30.0,
                 public_url=None, checkpoint_dir=None, device="auto", mode="auto", render_size=None,
                 gpu_ids=()):
        self.data_dir = os.path.abspath(data_dir)
        self.host, self.port = host, int(port)
        self.api_keys = list(api_keys)
        self.tls_cert, self.tls_key = tls_cert, tls_key
        self.workers = int(workers)
        self.max_body_bytes, self.max_image_bytes = int(max_body_bytes), int(max_image_bytes)
        self.fetch_timeout_s, self.max_redirects = float(fetch_timeout_s), int(max_redirects)
        self.allow_private_urls = bool(allow_private_urls)
        self.retention_hours = float(retention_hours)
        self.shutdown_grace_s = float(shutdown_grace_s)
        self.public_url = public_url.rstrip("/") if public_url else None
        self.run_options = {"checkpoint_dir": checkpoint_dir, "device": device, "mode": mode}
        self.render_size = render_size
        self.gpu_ids = list(gpu_ids)  # worker i sees only GPU gpu_ids[i % len] (CUDA_VISIBLE_DEVICES)


def _json(body, status=200, headers=None):
    return web.json_response(body, status=status, headers=headers)


def _error(status, detail, error_type=None):
    headers = {"x-fal-error-type": error_type} if error_type else None
    body = {"detail": detail}
    if error_type:
        body["error_type"] = error_type
    return _json(body, status, headers)


class Server:
    def __init__(self, config):
        self.cfg = config
        os.makedirs(os.path.join(config.data_dir, "results"), exist_ok=True)
        self.results_dir = os.path.join(config.data_dir, "results")
        self.db_path = os.path.join(config.data_dir, "jobs.sqlite3")
        self.store = JobStore(self.db_path)
        self.workers = []  # worker processes (lyra2/serve/worker_main.py), one per slot
        self.accepting = False
        self._decode_slots = threading.BoundedSemaphore(2)
        self._keys = [k.encode() for k in config.api_keys]

    # ------------------------------------------------------------------ app
    def app(self):
        app = web.Application(client_max_size=self.cfg.max_body_bytes,
                              middlewares=[self._errors_middleware, self._auth_middleware])
        owner_alias = "/".join(APPLICATION.split("/")[:2])
        app.router.add_get("/health", self.health)
        app.router.add_get("/openapi.json", self.openapi)
        app.router.add_get("/files/{token}/{name}", self.file)
        app.router.add_post("/" + APPLICATION, self.run_sync)
        app.router.add_post("/queue/" + APPLICATION, self.submit)
        for prefix in ("/queue/", "/"):
            base = f"{prefix}{owner_alias}/requests/{{request_id}}"
            app.router.add_get(base + "/status", self.status)
            app.router.add_get(base, self.result)
            app.router.add_put(base + "/cancel", self.cancel)
        app.on_startup.append(self._startup)
        app.on_shutdown.append(self._shutdown)
        return app

    @web.middleware
    async def _errors_middleware(self, request, handler):
        try:
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"request body over {self.cfg.max_body_bytes} bytes", "payload_too_large")
        except web.HTTPException as e:
            if e.status >= 400:
                return _error(e.status, e.reason or "error")
            raise
        except Exception as e:  # noqa: BLE001 - a bug answers 500 with JSON and the server keeps serving
            import traceback

            traceback.print_exc()
            return _error(500, f"internal server error ({type(e).__name__})", "internal_error")

    @web.middleware
    async def _auth_middleware(self, request, handler):
        if request.path in ("/health", "/openapi.json") or request.path.startswith("/files/"):
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, key = header.partition(" ")
        ok = scheme.lower() == "key" and key and any(hmac.compare_digest(key.strip().encode(), k)
                                                    for k in self._keys)
        if not ok:
            return _error(401, "Missing or invalid API key: send 'Authorization: Key <key>' with a key this "
                               "server was started with (--api-key / --api-keys-file)", "unauthorized")
        return await handler(request)

    # ------------------------------------------------------------------ lifecycle
    async def _startup(self, app):
        requeued = self.store.recover()
        if requeued:
            print(f"lyra2 serve: {requeued} job(s) interrupted by the last shutdown were re-queued or failed",
                  file=sys.stderr, flush=True)
        self.workers = [self._spawn(i) for i in range(self.cfg.workers)]
        app["monitor"] = asyncio.get_running_loop().create_task(self._monitor_workers())
        if self.cfg.retention_hours > 0:
            app["retention"] = asyncio.get_running_loop().create_task(self._retention_loop())
        self.accepting = True

    def _spawn(self, slot):
        env = dict(os.environ)
        if self.cfg.gpu_ids:
            env["CUDA_VISIBLE_DEVICES"] = str(self.cfg.gpu_ids[slot % len(self.cfg.gpu_ids)])
        size = "" if self.cfg.render_size is None else "x".join(str(v) for v in self.cfg.render_size)
        return subprocess.Popen([sys.executable, "-m", "lyra2.serve.worker_main", "--db", self.db_path,
                                 "--results-dir", self.results_dir, "--options", json.dumps(self.cfg.run_options),
                                 "--render-size", size, "--parent-pid", str(os.getpid())], env=env)

    async def _monitor_workers(self):
        """A worker that died (crash, OOM kill) gets its job re-queued (failed after MAX_ATTEMPTS starts) and is
        replaced."""
        while True:
            await asyncio.sleep(0.5)
            for slot, proc in enumerate(self.workers):
                code = proc.poll()
                if code is None:
                    continue
                self.store.requeue_worker(proc.pid, f"the worker process died (exit status {code})")
                print(f"lyra2 serve: worker {slot} (pid {proc.pid}) exited with {code}; starting a new one",
                      file=sys.stderr, flush=True)
                self.workers[slot] = self._spawn(slot)

    async def _wait_workers(self, seconds):
        deadline = time.monotonic() + seconds
        while any(p.poll() is None for p in self.workers) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)

    async def _shutdown(self, app):
        self.accepting = False
        for name in ("retention", "monitor"):
            task = app.get(name)
            if task is not None:
                task.cancel()
        alive = [p for p in self.workers if p.poll() is None]
        for p in alive:
            p.send_signal(signal.SIGTERM)  # finish the current job, take no new one
        await self._wait_workers(self.cfg.shutdown_grace_s)
        for p in self.workers:
            if p.poll() is None:  # the grace period is over: stop at the next step and re-queue
                p.send_signal(signal.SIGUSR1)
        await self._wait_workers(30.0)
        for p in self.workers:
            if p.poll() is None:
                p.kill()
                p.wait()
            self.store.requeue_worker(p.pid, "the server shut down while this job ran")
        self.store.close()

    async def _retention_loop(self):
        period = min(600.0, max(1.0, self.cfg.retention_hours * 3600 / 10))
        while True:
            self.store.expire_results(self.cfg.retention_hours * 3600)
            await asyncio.sleep(period)

    # ------------------------------------------------------------------ helpers
    def _base_url(self, request):
        if self.cfg.public_url:
            return self.cfg.public_url
        return f"{request.scheme}://{request.host}"

    def _urls(self, request, request_id):
        owner_alias = "/".join(APPLICATION.split("/")[:2])
        base = f"{self._base_url(request)}/queue/{owner_alias}/requests/{request_id}"
        return {"response_url": base, "status_url": base + "/status", "cancel_url": base + "/cancel"}

    def _absolute_result(self, request, result):
        result = json.loads(json.dumps(result))
        url = result.get("video", {}).get("url", "")
        if url.startswith("/files/"):
            result["video"]["url"] = self._base_url(request) + url
        return result

    async def _read_arguments(self, request):
        raw = await request.read()
        try:
            arguments = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise _Refused(_error(400, f"malformed JSON body: {e}", "invalid_json"))
        if not isinstance(arguments, dict):
            raise _Refused(_error(422, validation_detail(None, TypeError(
                f"arguments: expected a JSON object of the endpoint's fields; got {type(arguments).__name__}")),
                "validation_error"))
        return arguments

    async def _image_bytes(self, url):
        from ..media import load_image_bytes

        scheme = url.split(":", 1)[0].lower() if ":" in url else ""
        if scheme in ("http", "https"):
            return await fetch_url(url, max_bytes=self.cfg.max_image_bytes, timeout_s=self.cfg.fetch_timeout_s,
                                   max_redirects=self.cfg.max_redirects,
                                   allow_private=self.cfg.allow_private_urls)
        if scheme == "data":
            if len(url) > self.cfg.max_image_bytes * 4 // 3 + 1024:
                raise ImageSourceError(f"image_url: the data: URI is over {self.cfg.max_image_bytes} bytes")
            try:
                return load_image_bytes(url)
            except (ValueError, TypeError) as e:
                raise ImageSourceError(f"image_url: {e}") from None
        raise ImageSourceError(f"image_url: {url[:100]!r} is not accepted by this server; send an http(s) URL "
                               "or a data: URI (fal_client.encode_file); file:// URLs and paths are refused")

    def _check_decodes(self, data):
        from ..media import read_image
        from .._core import Lyra2Error

        with self._decode_slots:
            try:
                read_image(data)
            except (ValueError, TypeError, Lyra2Error) as e:
                raise ImageSourceError(f"image_url: not a usable image ({e})") from None

    async def _accept(self, request):
        """Validates, fetches and checks the image, and queues the job: (request_id, position)."""
        if not self.accepting:
            raise _Refused(_error(503, "the server is shutting down", "unavailable"))
        if "fal_webhook" in request.query:
            raise _Refused(_error(422, "fal_webhook: webhooks are not supported by lyra2 serve; poll the status URL "
                                       "(subscribe / handle.get())", "validation_error"))
        arguments = await self._read_arguments(request)
        try:
            args = validate(arguments)
        except (ValueError, TypeError) as e:
            raise _Refused(_error(422, validation_detail(None, e), "validation_error"))
        start_timeout = None
        header = request.headers.get("X-Fal-Request-Timeout")
        if header is not None:
            try:
                start_timeout = float(header)
                if not start_timeout > 0:
                    raise ValueError
            except ValueError:
                raise _Refused(_error(422, f"X-Fal-Request-Timeout: {header!r} is not a positive number of "
                                           "seconds", "validation_error"))
        priority = request.headers.get("X-Fal-Queue-Priority", "normal")
        if priority not in ("normal", "low"):
            raise _Refused(_error(422, f"X-Fal-Queue-Priority: {priority[:40]!r} is not allowed; expected "
                                       "'normal' or 'low'", "validation_error"))
        try:
            data = await self._image_bytes(args["image_url"])
            await asyncio.get_running_loop().run_in_executor(None, self._check_decodes, data)
        except ImageSourceError as e:
            raise _Refused(_error(422, validation_detail("image_url", e), "validation_error"))
        return self.store.submit(APPLICATION, args, data, start_timeout=start_timeout, priority=priority)

    def _known(self, request):
        request_id = request.match_info["request_id"]
        if not _REQUEST_ID_RE.match(request_id) or not self.store.exists(request_id):
            raise _Refused(_error(404, f"Request {request_id[:64]!r} not found", "not_found"))
        return request_id

    # ------------------------------------------------------------------ handlers
    async def health(self, request):
        if not self.accepting:
            return _error(503, "starting or stopping", "unavailable")
        alive = sum(p.poll() is None for p in self.workers)
        return _json({"status": "ok", "workers": alive, "jobs": self.store.counts()})

    async def openapi(self, request):
        return _json(openapi.build())

    async def submit(self, request):
        try:
            request_id, position = await self._accept(request)
        except _Refused as r:
            return r.response
        return _json({"status": "IN_QUEUE", "request_id": request_id, "queue_position": position,
                      **self._urls(request, request_id)}, headers={"x-fal-request-id": request_id})

    async def run_sync(self, request):
        try:
            request_id, _ = await self._accept(request)
        except _Refused as r:
            return r.response
        try:
            while True:
                state = self.store.status(request_id)
                if state is None or state["status"] == "COMPLETED":
                    break
                await asyncio.sleep(0.1)
        except asyncio.CancelledError:  # the client went away: its job is not wanted any more
            self.store.cancel(request_id)
            raise
        return self._outcome_response(request, request_id)

    def _outcome_response(self, request, request_id):
        code, body, error_type = self.store.outcome(request_id)
        headers = {"x-fal-request-id": request_id}
        if code == 200:
            return _json(self._absolute_result(request, body), headers=headers)
        if error_type:
            headers["x-fal-error-type"] = error_type
        if error_type == "request_timeout":
            headers["X-Fal-Request-Timeout-Type"] = "user"
        return _json(body, code, headers)

    async def status(self, request):
        try:
            request_id = self._known(request)
        except _Refused as r:
            return r.response
        logs = request.query.get("logs", "false").lower() in ("1", "true", "yes")
        state = self.store.status(request_id, with_logs=logs)
        return _json({**state, **self._urls(request, request_id)})

    async def result(self, request):
        try:
            request_id = self._known(request)
        except _Refused as r:
            return r.response
        return self._outcome_response(request, request_id)

    async def cancel(self, request):
        try:
            request_id = self._known(request)
        except _Refused as r:
            return r.response
        state = self.store.cancel(request_id)
        if state == "ALREADY_COMPLETED":
            return _json({"status": "ALREADY_COMPLETED", "detail": "Request already completed"}, 400)
        return _json({"status": "CANCELLATION_REQUESTED"}, 202)

    async def file(self, request):
        token, name = request.match_info["token"], request.match_info["name"]
        if not _TOKEN_RE.match(token) or not _FILE_RE.match(name):
            return _error(404, "Not found", "not_found")
        path = os.path.realpath(os.path.join(self.results_dir, token, name))
        if os.path.dirname(os.path.dirname(path)) != os.path.realpath(self.results_dir) or not os.path.isfile(path):
            return _error(404, "Not found", "not_found")
        return web.FileResponse(path, headers={"Content-Type": "video/mp4",
                                               "Content-Disposition": f'inline; filename="{name}"',
                                               "Cache-Control": "private, max-age=3600"})


class _Refused(Exception):
    def __init__(self, response):
        super().__init__(response.status)
        self.response = response


def serve(config, tls_context, *, announce=print):
    """Runs the server until SIGTERM/SIGINT (graceful: running jobs get `shutdown_grace_s` to finish, then are
    re-queued for the next start)."""
    server = Server(config)
    shown_host = config.host if config.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    if ":" in shown_host:
        shown_host = f"[{shown_host}]"

    def ready(_text):
        hostport = f"{shown_host}:{config.port}"
        announce(f"lyra2 serve: fal-ai/lyra-2/zoom on https://{hostport} ({config.workers} worker(s), data in "
                 f"{config.data_dir}). Point fal_client scripts here with:\n"
                 f"  export FAL_RUN_HOST={hostport}\n"
                 f"  export FAL_QUEUE_RUN_HOST={hostport}/queue\n"
                 f"  export SSL_CERT_FILE={config.tls_cert}\n"
                 f"  export FAL_KEY=<one of the server's API keys>")

    web.run_app(server.app(), host=config.host, port=config.port, ssl_context=tls_context, print=ready,
                shutdown_timeout=config.shutdown_grace_s + 35.0, access_log=None, handle_signals=True)


def parse_size(text):
    """'32x48' (HxW) -> (32, 48)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text or "")
    if not m:
        raise ValueError(f"--render-size: {text!r} is not HxW (e.g. 32x48)")
    h, w = int(m.group(1)), int(m.group(2))
    if not (8 <= h <= 4096 and 8 <= w <= 4096):
        raise ValueError(f"--render-size: {text!r}: each side must be in 8..4096")
    return h, w
