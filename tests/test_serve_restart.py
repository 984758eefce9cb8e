"""`lyra2 serve` in generate mode on the tiny checkpoint (rendered at 32x48): a SIGKILL mid-job and a restart
finish the job once, client_timeout cancels a running job, the endpoint page's Python example runs unmodified
but for environment variables, and SIGTERM shuts down cleanly."""
import ast
import http.server
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

fal_client = pytest.importorskip("fal_client")
httpx = pytest.importorskip("httpx")
pytest.importorskip("aiohttp")
pytest.importorskip("cryptography")

import lyra2  # noqa: E402
from serve_util import APP, EXAMPLE, ServerProcess, child_env, patch_fal_client  # noqa: E402

KEY = "restart-test-key"


@pytest.fixture(scope="module")
def tiny_server(tmp_path_factory):
    ckpt = lyra2.testing.make_tiny_checkpoint(str(tmp_path_factory.mktemp("tiny")), seed=0)
    srv = ServerProcess(tmp_path_factory.mktemp("serve-gen"),
                        ["--api-key", KEY, "--workers", "1", "--checkpoint-dir", ckpt, "--mode", "generate",
                         "--render-size", "32x48", "--allow-private-urls", "--shutdown-grace", "5"])
    srv.start()
    yield srv
    try:
        if srv.proc.poll() is None:
            assert srv.terminate() == 0, srv.log()
    finally:
        srv.kill()


@pytest.fixture(scope="module")
def image_host():
    """The example image over plain HTTP on loopback (the server runs with --allow-private-urls)."""
    folder = os.path.dirname(EXAMPLE)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=folder, **kw)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/{os.path.basename(EXAMPLE)}"
    httpd.shutdown()
    httpd.server_close()


def job_row(server, request_id):
    db = sqlite3.connect(os.path.join(server.data_dir, "jobs.sqlite3"))
    try:
        db.row_factory = sqlite3.Row
        return dict(db.execute("SELECT status, attempts, output_path, error_type FROM jobs WHERE id = ?",
                               (request_id,)).fetchone())
    finally:
        db.close()


def workers_of(pid):
    """Process ids of the worker processes a server process `pid` started (read from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"lyra2.serve.worker_main" in argv and f"{pid}".encode() in argv:
            out.append(int(entry))
    return out


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def wait_in_progress(handle, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = handle.status()
        if isinstance(status, fal_client.InProgress):
            return
        assert not isinstance(status, fal_client.Completed), status
        time.sleep(0.05)
    pytest.fail("the job did not start")


def test_sigkill_mid_job_then_restart_completes_it_once(tiny_server, image_host, monkeypatch):
    patch_fal_client(monkeypatch, tiny_server)
    client = fal_client.SyncClient(key=KEY)
    # 481 frames = 6 chunks: with the faster CPU kernels one 81-frame tiny job can finish inside the 1 s below
    handle = client.submit(APP, {"image_url": image_host, "prompt": "a quiet street", "seed": 3, "num_frames": 481})
    wait_in_progress(handle)
    time.sleep(1.0)
    server_pid = tiny_server.proc.pid
    assert workers_of(server_pid)
    tiny_server.kill()
    wait_until(lambda: not workers_of(server_pid), 10, "the workers to die with the server")
    assert job_row(tiny_server, handle.request_id)["status"] == "IN_PROGRESS"
    tiny_server.start()
    result = handle.get(interval=0.1)
    assert result["mode"] == "generate" and "preview" not in result and result["seed"] == 3
    row = job_row(tiny_server, handle.request_id)
    assert row["status"] == "COMPLETED" and row["attempts"] == 2
    done = handle.status(with_logs=True)
    messages = [e["message"] for e in done.logs]
    assert any("re-queued" in m for m in messages)
    results = os.path.join(tiny_server.data_dir, "results")
    videos = [os.path.join(d, f) for d in os.listdir(results) for f in os.listdir(os.path.join(results, d))]
    assert videos == [os.path.relpath(row["output_path"], results)]  # the killed attempt left nothing behind
    r = httpx.get(result["video"]["url"], verify=tiny_server.verify())
    assert r.status_code == 200 and len(r.content) == result["video"]["file_size"]


def test_a_crashed_worker_is_replaced_and_its_job_rerun(tiny_server, image_host, monkeypatch):
    patch_fal_client(monkeypatch, tiny_server)
    client = fal_client.SyncClient(key=KEY)
    handle = client.submit(APP, {"image_url": image_host, "prompt": "a quiet street", "seed": 4})
    wait_in_progress(handle)
    (worker,) = workers_of(tiny_server.proc.pid)
    os.kill(worker, signal.SIGKILL)  # as a segfault or the OOM killer would
    result = handle.get(interval=0.1)
    assert result["seed"] == 4 and job_row(tiny_server, handle.request_id)["attempts"] == 2
    assert any("worker process died" in e["message"] for e in handle.status(with_logs=True).logs)
    assert len(workers_of(tiny_server.proc.pid)) == 1


def test_client_timeout_cancels_the_running_job(tiny_server, image_host, monkeypatch):
    patch_fal_client(monkeypatch, tiny_server)
    client = fal_client.SyncClient(key=KEY)
    ids = []
    t0 = time.monotonic()
    with pytest.raises(fal_client.FalClientTimeoutError) as info:
        # 481 frames = 6 chunks: on an idle machine one 81-frame tiny job can finish inside the timeout
        client.subscribe(APP, {"image_url": image_host, "prompt": "a quiet street", "num_frames": 481},
                         client_timeout=2.5, on_enqueue=ids.append)
    assert time.monotonic() - t0 < 30 and info.value.request_id == ids[0]
    handle = client.get_handle(APP, ids[0])
    events = list(handle.iter_events(interval=0.1))
    assert events[-1].error_type == "request_cancelled"
    row = job_row(tiny_server, ids[0])
    assert row["output_path"] is None or not os.path.exists(row["output_path"])


PAGE_EXAMPLE = '''
import fal_client

def on_queue_update(update):
    if isinstance(update, fal_client.InProgress):
        for log in update.logs:
           print(log["message"])

result = fal_client.subscribe(
    "fal-ai/lyra-2/zoom",
    arguments={
        "image_url": "https://v3b.fal.media/files/b/0a972579/6NsCexuhSlD8gcFYlpr1K_00.png",
        "prompt": "A slow, steady horizontal orbit of the camera around the scene, focusing on the two galleons."
    },
    with_logs=True,
    on_queue_update=on_queue_update,
)
print(result)
'''


def test_endpoint_page_python_example_runs_with_environment_variables(tiny_server, image_host, tmp_path):
    """The page's example, verbatim but for the image URL (this machine is offline, so the image comes from a
    loopback host instead of fal's CDN); the server is chosen by environment variables only."""
    script = tmp_path / "example.py"
    script.write_text(PAGE_EXAMPLE.replace("https://v3b.fal.media/files/b/0a972579/6NsCexuhSlD8gcFYlpr1K_00.png",
                                           image_host))
    env = child_env(FAL_RUN_HOST=f"127.0.0.1:{tiny_server.port}",
                    FAL_QUEUE_RUN_HOST=f"127.0.0.1:{tiny_server.port}/queue",
                    SSL_CERT_FILE=tiny_server.cert, FAL_KEY=KEY)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    result = ast.literal_eval(lines[-1])  # the example prints the result dict with print()
    assert any("generating 81 frames" in line for line in lines[:-1])  # InProgress logs were printed
    assert result["mode"] == "generate" and result["video"]["url"].startswith(tiny_server.url + "/files/")
    r = httpx.get(result["video"]["url"], verify=tiny_server.verify())
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"


def test_sigterm_shuts_down_gracefully(tiny_server):
    assert tiny_server.terminate(timeout=60) == 0, tiny_server.log()
