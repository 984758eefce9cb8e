"""`lyra2 serve` driven by the real fal-client from PyPI over TLS on loopback (preview mode, rendered at 48x80 by
the server's --render-size so each job takes a fraction of a second)."""
import base64
import concurrent.futures
import json
import os
import shutil
import sqlite3
import subprocess
import sys

import pytest

fal_client = pytest.importorskip("fal_client")
httpx = pytest.importorskip("httpx")
pytest.importorskip("aiohttp")
pytest.importorskip("cryptography")

from serve_util import APP, EXAMPLE, ServerProcess, patch_fal_client  # noqa: E402

KEY, KEY2 = "test-key-1", "test-key-2"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("serve")
    keys_file = data / "keys.txt"
    keys_file.write_text(f"# team keys\n{KEY2}\n")
    srv = ServerProcess(data, ["--api-key", KEY, "--api-keys-file", str(keys_file), "--workers", "2",
                               "--render-size", "48x80", "--max-body-mb", "2", "--fetch-timeout", "5"])
    srv.start()
    yield srv
    try:
        assert srv.terminate() == 0, srv.log()
    finally:
        srv.kill()


@pytest.fixture
def client(server, monkeypatch):
    patch_fal_client(monkeypatch, server)
    return fal_client.SyncClient(key=KEY)


def data_uri(path=EXAMPLE, content_type="image/png"):
    with open(path, "rb") as f:
        return f"data:{content_type};base64," + base64.b64encode(f.read()).decode()


ARGS = {"image_url": data_uri(), "prompt": "an espresso cup", "num_frames": 81, "resolution": "480p", "seed": 7}


def result_files(server):
    folder = os.path.join(server.data_dir, "results")
    return sorted(os.path.join(d, f) for d in os.listdir(folder) for f in os.listdir(os.path.join(folder, d)))


def test_subscribe_with_logs_and_https_download(client, server):
    updates, enqueued = [], []
    result = client.subscribe(APP, ARGS, with_logs=True, on_enqueue=enqueued.append,
                              on_queue_update=updates.append, interval=0.05)
    assert len(enqueued) == 1 and isinstance(updates[-1], fal_client.Completed)
    assert result["seed"] == 7 and result["mode"] == "preview" and "preview" in result["preview"]
    logs = [u.logs for u in updates if isinstance(u, (fal_client.InProgress, fal_client.Completed)) and u.logs]
    # fal's queue logs are cumulative: every later list starts with the earlier one.
    assert logs and all(b[:len(a)] == a for a, b in zip(logs, logs[1:]))
    assert any("--render-size" in e["message"] for e in logs[-1])
    video = result["video"]
    assert video["url"].startswith(server.url + "/files/") and video["content_type"] == "video/mp4"
    r = httpx.get(video["url"])  # SSL_CERT_FILE (set by the fixture) makes httpx trust the server
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
    assert len(r.content) == video["file_size"] and r.content[4:8] == b"ftyp"


def test_submit_status_result_iter_events(client):
    handle = client.submit(APP, ARGS)
    assert isinstance(handle, fal_client.SyncRequestHandle) and len(handle.request_id) == 36
    first = handle.status()
    assert isinstance(first, (fal_client.Queued, fal_client.InProgress, fal_client.Completed))
    events = list(handle.iter_events(with_logs=True, interval=0.05))
    done = events[-1]
    assert isinstance(done, fal_client.Completed) and done.error is None and done.logs
    assert done.metrics["inference_time"] > 0
    by_id = client.status(APP, handle.request_id, with_logs=False)
    assert isinstance(by_id, fal_client.Completed) and by_id.logs is None
    assert client.result(APP, handle.request_id) == handle.get()


def test_validation_error_is_fals_http_error(client):
    with pytest.raises(fal_client.FalClientHTTPError) as info:
        client.submit(APP, dict(ARGS, num_frames=100))
    e = info.value
    assert e.status_code == 422 and e.error_type == "validation_error"
    assert e.message[0]["loc"] == ["body", "num_frames"]
    text = str(e)
    assert "num_frames" in text and "100" in text and "481" in text
    with pytest.raises(fal_client.FalClientHTTPError, match="zoom_direction") as info:
        client.run(APP, dict(ARGS, zoom_direction="sideways"))
    assert info.value.status_code == 422


def test_api_keys(server, monkeypatch):
    patch_fal_client(monkeypatch, server)
    for headers in ({}, {"Authorization": "Key wrong"}, {"Authorization": f"Bearer {KEY}"}):
        r = httpx.post(f"{server.url}/queue/{APP}", json=ARGS, headers=headers)
        assert r.status_code == 401, headers
    with pytest.raises(fal_client.FalClientHTTPError) as info:
        fal_client.SyncClient(key="wrong").submit(APP, ARGS)
    assert info.value.status_code == 401
    handle = fal_client.SyncClient(key=KEY2).submit(APP, ARGS)  # the keys-file key
    assert handle.get()["seed"] == 7


def test_cancel_queued_job_leaves_no_file(client, server):
    handles = [client.submit(APP, dict(ARGS, num_frames=481, zoom_direction="both")) for _ in range(4)]
    last = handles[-1]
    last.cancel()
    status = last.status()
    if isinstance(status, fal_client.Completed) and status.error is None:
        pytest.fail("the last of four queued jobs finished before it could be cancelled")
    events = list(last.iter_events(interval=0.05))
    assert events[-1].error_type == "request_cancelled"
    with pytest.raises(fal_client.FalClientHTTPError) as info:
        last.get()
    assert info.value.status_code == 400
    for h in handles[:-1]:
        h.get()
    with pytest.raises(fal_client.FalClientHTTPError) as info:
        handles[0].cancel()  # already completed
    assert info.value.status_code == 400
    db = sqlite3.connect(os.path.join(server.data_dir, "jobs.sqlite3"))
    path = db.execute("SELECT output_path FROM jobs WHERE id = ?", (last.request_id,)).fetchone()[0]
    db.close()
    assert path is None or not os.path.exists(path)


def test_fifty_submissions_from_ten_threads(client, server):
    before = set(result_files(server))

    def one(i):
        handle = client.submit(APP, dict(ARGS, seed=1000 + i))
        return handle.request_id, handle.get(interval=0.05)

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        out = list(pool.map(one, range(50)))
    ids = [i for i, _ in out]
    assert len(set(ids)) == 50
    assert sorted(r["seed"] for _, r in out) == list(range(1000, 1050))
    assert len({r["video"]["url"] for _, r in out}) == 50
    new = set(result_files(server)) - before
    assert len(new) == 50  # one video per job: none ran twice
    db = sqlite3.connect(os.path.join(server.data_dir, "jobs.sqlite3"))
    rows = db.execute(f"SELECT status, attempts FROM jobs WHERE id IN ({','.join('?' * 50)})", ids).fetchall()
    db.close()
    assert rows == [("COMPLETED", 1)] * 50


def test_bad_requests_get_4xx_and_the_server_keeps_serving(server, client):
    h = {"Authorization": f"Key {KEY}"}
    submit = f"{server.url}/queue/{APP}"
    r = httpx.post(submit, content=b"{not json", headers=h)
    assert r.status_code == 400 and "JSON" in r.json()["detail"]
    r = httpx.post(submit, content=b"[1, 2]", headers=h)
    assert r.status_code == 422
    big = json.dumps(dict(ARGS, prompt="x" * (3 << 20))).encode()
    r = httpx.post(submit, content=big, headers=h)
    assert r.status_code == 413
    for url in ("file:///etc/passwd", "/etc/passwd", f"{server.url}/health", "http://169.254.169.254/latest/",
                "http://[::1]:1/x.png", "ftp://example.com/x.png"):
        r = httpx.post(submit, json=dict(ARGS, image_url=url), headers=h)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "image_url"], (url, r.text)
    not_image = "data:image/png;base64," + base64.b64encode(b"#!/bin/sh\necho hello\n" * 50).decode()
    r = httpx.post(submit, json=dict(ARGS, image_url=not_image), headers=h)
    assert r.status_code == 422 and "image" in r.json()["detail"][0]["msg"]
    for path in ("/files/..%2F..%2Fjobs.sqlite3/x", "/files/%2e%2e/%2e%2e%2fjobs.sqlite3",
                 "/files/" + "a" * 32 + "/..%2F..%2Fjobs.sqlite3", "/files/" + "a" * 32 + "/lyra2-zoom-00000000.mp4"):
        assert httpx.get(server.url + path).status_code == 404, path
    r = httpx.post(submit + "?fal_webhook=https://example.com/hook", json=ARGS, headers=h)
    assert r.status_code == 422 and "webhook" in r.json()["detail"]
    r = httpx.get(f"{server.url}/queue/fal-ai/lyra-2/requests/not-a-request/status", headers=h)
    assert r.status_code == 404
    assert httpx.get(server.url + "/health").status_code == 200
    assert client.run(APP, ARGS)["seed"] == 7


def test_curl_example_against_the_server(server, tmp_path):
    """The endpoint page's cURL example, with the server's URL and certificate."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"image_url": ARGS["image_url"], "prompt": "A slow, steady horizontal orbit"}))
    out = subprocess.run(["curl", "--silent", "--show-error", "--cacert", server.cert, "--request", "POST",
                          "--url", f"{server.url}/{APP}", "--header", f"Authorization: Key {KEY}",
                          "--header", "Content-Type: application/json", "--data", f"@{body}"],
                         capture_output=True, text=True, timeout=120,
                         # curl is the user's client, not lyra2: the sanitizer run's LD_PRELOAD of libasan makes curl
                         # itself hang before it sends anything (seen with curl 7.88 + GCC 12's libasan)
                         env={k: v for k, v in os.environ.items() if k != "LD_PRELOAD"})
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["video"]["content_type"] == "video/mp4" and result["video"]["url"].startswith("https://")


def test_openapi_schema_matches_the_endpoint_fields(server):
    from lyra2.fields import SCHEMA

    schema = httpx.get(server.url + "/openapi.json", verify=server.verify()).json()
    props = schema["components"]["schemas"]["Input"]["properties"]
    assert set(props) == set(SCHEMA)
    for name, (kind, default, constraint) in SCHEMA.items():
        if kind in ("enum", "int_enum"):
            assert props[name]["enum"] == list(constraint) and props[name]["default"] == default
        if kind in ("float", "int"):
            assert (props[name]["minimum"], props[name]["maximum"]) == constraint
            assert props[name]["default"] == default
    assert schema["components"]["schemas"]["Input"]["required"] == ["image_url", "prompt"]


def test_schemathesis_fuzz_finds_no_5xx_and_no_schema_mismatch(server, tmp_path):
    """Bounded (10 examples an operation, fixed seed): the schema's example runs real jobs, the fuzzer sends
    random bodies and ids, and the stateful phase follows submit's links to status/result/cancel."""
    pytest.importorskip("schemathesis")
    out = subprocess.run([sys.executable, "-m", "schemathesis.cli", "run", server.url + "/openapi.json",
                          "--url", server.url,
                          "--tls-verify", server.cert, "-H", f"Authorization: Key {KEY}",
                          "--checks", "not_a_server_error,response_schema_conformance,status_code_conformance,"
                          "content_type_conformance", "--max-examples", "10", "--seed", "1", "--workers", "1",
                          "--request-timeout", "120", "--phases", "examples,fuzzing,stateful",
                          "--report-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    assert httpx.get(server.url + "/health", verify=server.verify()).status_code == 200
