"""The job store's crash recovery and retention, the guarded image fetch, and `lyra2 serve`'s command line,
without a running server."""
import asyncio
import http.server
import os
import sys
import threading

import pytest

from lyra2 import cli
from lyra2.serve.jobs import MAX_ATTEMPTS, JobStore

ARGS = {"prompt": "x", "seed": 1}


def test_recover_requeues_interrupted_jobs_and_fails_them_after_max_attempts(tmp_path):
    db = str(tmp_path / "jobs.sqlite3")
    store = JobStore(db)
    request_id, position = store.submit("fal-ai/lyra-2/zoom", ARGS, b"img")
    other, other_position = store.submit("fal-ai/lyra-2/zoom", ARGS, b"img")
    assert (position, other_position) == (0, 1)
    folder = tmp_path / "results" / ("t" * 32)
    folder.mkdir(parents=True)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        job = store.claim(timeout=1.0)
        assert job["id"] == request_id and job["attempts"] == attempt - 1 and job["image"] == b"img"
        partial = folder / "lyra2-zoom-0000.mp4"
        partial.write_bytes(b"half")
        store.set_output_path(request_id, str(partial))
        store.close()  # the process dies here
        store = JobStore(db)
        assert store.recover() == 1
        assert not folder.exists()  # the dead attempt's file is gone
        folder.mkdir(parents=True)
        state = store.status(request_id, with_logs=True)
        if attempt < MAX_ATTEMPTS:
            assert state["status"] == "IN_QUEUE" and state["queue_position"] == 0
    assert state["status"] == "COMPLETED" and state["error_type"] == "runner_interrupted"
    assert sum("re-queued" in e["message"] for e in state["logs"]) == MAX_ATTEMPTS - 1
    assert store.outcome(request_id)[0] == 500
    assert store.status(other)["queue_position"] == 0
    store.close()


def test_retention_removes_old_videos_and_answers_410(tmp_path):
    store = JobStore(str(tmp_path / "jobs.sqlite3"))
    request_id, _ = store.submit("fal-ai/lyra-2/zoom", ARGS, b"img")
    store.claim(timeout=1.0)
    folder = tmp_path / "results" / ("r" * 32)
    folder.mkdir(parents=True)
    video = folder / "lyra2-zoom-0001.mp4"
    video.write_bytes(b"mp4")
    store.set_output_path(request_id, str(video))
    assert store.finish(request_id, {"video": {"url": "/files/x"}, "seed": 1}, 0.5)
    assert store.expire_results(3600) == 0 and video.exists()
    assert store.expire_results(-1) == 1 and not folder.exists()
    assert store.outcome(request_id)[0] == 410
    store.close()


def test_low_priority_jobs_run_after_normal_ones():
    store = JobStore()
    low, p_low = store.submit("fal-ai/lyra-2/zoom", ARGS, b"i", priority="low")
    first, p_first = store.submit("fal-ai/lyra-2/zoom", ARGS, b"i")
    second, p_second = store.submit("fal-ai/lyra-2/zoom", ARGS, b"i")
    assert (p_low, p_first, p_second) == (0, 0, 1)
    assert store.status(low)["queue_position"] == 2
    assert [store.claim(timeout=0.1)["id"] for _ in range(3)] == [first, second, low]


def test_start_timeout_expires_a_queued_job(tmp_path):
    store = JobStore()
    request_id, _ = store.submit("fal-ai/lyra-2/zoom", ARGS, b"img", start_timeout=-1)
    state = store.status(request_id)
    assert state["status"] == "COMPLETED" and state["error_type"] == "request_timeout"
    assert store.outcome(request_id)[0] == 504 and store.claim(timeout=0.1) is None


@pytest.fixture
def web_host():
    """Loopback HTTP: /img (bytes), /big (2 MiB), /loop (redirects to itself)."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/loop":
                self.send_response(302)
                self.send_header("Location", "/loop")
                self.end_headers()
                return
            body = b"x" * (2 << 20) if self.path == "/big" else b"pixels"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_fetch_limits_and_no_private_addresses(web_host):
    pytest.importorskip("aiohttp")
    from lyra2.serve.fetch import ImageSourceError, fetch_url

    def fetch(url, allow_private=True, max_bytes=1 << 20):
        return asyncio.run(fetch_url(url, max_bytes=max_bytes, timeout_s=10, max_redirects=3,
                                     allow_private=allow_private))

    assert fetch(web_host + "/img") == b"pixels"
    with pytest.raises(ImageSourceError, match="over 1048576 bytes|is 2097152 bytes"):
        fetch(web_host + "/big")
    with pytest.raises(ImageSourceError, match="more than 3 redirects"):
        fetch(web_host + "/loop")
    with pytest.raises(ImageSourceError, match="loopback"):
        fetch(web_host + "/img", allow_private=False)
    port = web_host.rsplit(":", 1)[1]
    with pytest.raises(ImageSourceError, match="does not fetch from"):  # a name that resolves to loopback
        fetch(f"http://localhost:{port}/img", allow_private=False)


def test_serve_help_documents_every_setting(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["serve", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--host", "--port", "--data-dir", "--api-key", "--api-keys-file", "--tls-cert", "--tls-key",
                 "--workers", "--max-body-mb", "--max-image-mb", "--fetch-timeout", "--max-redirects",
                 "--allow-private-urls", "--retention-hours", "--shutdown-grace", "--public-url",
                 "--checkpoint-dir", "--device", "--mode", "--render-size", "SSL_CERT_FILE", "FAL_QUEUE_RUN_HOST"):
        assert flag in text, flag


def test_serve_without_the_extra_names_it(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "aiohttp", None)
    assert cli.main(["serve", "--data-dir", str(tmp_path)]) == 2
    assert "pip install 'lyra2[serve]'" in capsys.readouterr().err


def test_serve_rejects_bad_settings(capsys, tmp_path):
    pytest.importorskip("aiohttp")
    pytest.importorskip("cryptography")
    for argv, needle in ((["--tls-cert", "x.pem"], "--tls-cert and --tls-key"),
                         (["--workers", "0"], "--workers"), (["--render-size", "big"], "--render-size"),
                         (["--api-key", "a b"], "--api-key"), (["--api-keys-file", str(tmp_path / "none")],
                                                                "--api-keys-file")):
        assert cli.main(["serve", "--data-dir", str(tmp_path / "d"), "--api-key", "k", *argv]) == 2, argv
        assert needle in capsys.readouterr().err, argv
    # no key given: one is generated once, private to the owner
    assert cli.main(["serve", "--data-dir", str(tmp_path / "g"), "--workers", "0"]) == 2
    key_file = tmp_path / "g" / "api_keys"
    assert len(key_file.read_text().strip()) >= 40 and (os.stat(key_file).st_mode & 0o077) == 0
