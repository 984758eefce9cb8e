"""lyra2.fal_client: fal_client's surface in process (preview mode; jobs that must finish render at 48x80 with
the client's render_size, jobs that get cancelled run at the endpoint's 480p)."""
import asyncio
import base64
import dataclasses
import inspect
import os
import time
import warnings

import pytest

import lyra2
import lyra2.fal_client as lfc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "coffee.png")
APP = "fal-ai/lyra-2/zoom"
ARGS = {"image_url": EXAMPLE, "prompt": "an espresso cup", "seed": 5}
SMALL = (48, 80)


@pytest.fixture(autouse=True)
def quiet_preview_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.fixture
def outdir(tmp_path, monkeypatch):
    monkeypatch.setenv("LYRA2_OUTPUT_DIR", str(tmp_path))
    return tmp_path


def test_surface_matches_the_real_fal_client():
    real = pytest.importorskip("fal_client")
    not_local = {"RealtimeConnection", "AsyncRealtimeConnection", "ObjectExpiration", "StorageACL",
                 "StorageACLDecision", "StorageACLRule", "StorageSettings", "set_get_current_app", "__version__",
                 "version_tuple"}
    missing = [n for n in real.__all__ if n not in not_local and not hasattr(lfc, n)]
    assert not missing
    for cls in ("SyncClient", "AsyncClient"):
        for name in ("run", "submit", "subscribe", "status", "result", "cancel", "get_handle", "upload",
                     "upload_file", "upload_image"):
            ours = inspect.signature(getattr(getattr(lfc, cls), name)).parameters
            theirs = inspect.signature(getattr(getattr(real, cls), name)).parameters
            ours = [(p.name, p.kind, p.default) for p in ours.values() if not p.name.startswith("_")]
            theirs = [(p.name, p.kind, p.default) for p in theirs.values()]
            assert ours == theirs, (cls, name)
    for cls in ("SyncRequestHandle", "AsyncRequestHandle"):
        for name in ("status", "iter_events", "get", "cancel"):
            ours = inspect.signature(getattr(getattr(lfc, cls), name))
            theirs = inspect.signature(getattr(getattr(real, cls), name))
            assert [(p.name, p.default) for p in ours.parameters.values()] == \
                [(p.name, p.default) for p in theirs.parameters.values()], (cls, name)
    for cls in ("Queued", "InProgress", "Completed", "FalClientHTTPError", "FalClientTimeoutError"):
        assert [f.name for f in dataclasses.fields(getattr(lfc, cls))] == \
            [f.name for f in dataclasses.fields(getattr(real, cls))], cls
    assert issubclass(lfc.Queued, lfc.Status) and issubclass(lfc.FalClientTimeoutError, TimeoutError)
    assert lyra2.subscribe is lfc.subscribe and lyra2.InProgress is lfc.InProgress


def test_subscribe_logs_are_cumulative_and_the_result_says_preview(outdir):
    updates, enqueued = [], []
    client = lfc.SyncClient(render_size=SMALL)
    result = client.subscribe(APP, ARGS, with_logs=True, on_enqueue=enqueued.append,
                              on_queue_update=updates.append, interval=0.05)
    assert len(enqueued) == 1 and isinstance(updates[-1], lfc.Completed) and updates[-1].error is None
    logs = [u.logs for u in updates if isinstance(u, (lfc.InProgress, lfc.Completed)) and u.logs]
    assert logs and all(b[:len(a)] == a for a, b in zip(logs, logs[1:]))
    assert updates[-1].logs == logs[-1] and any("rendering 81 preview frames" in e["message"] for e in logs[-1])
    assert result["mode"] == "preview" and "preview" in result["preview"] and result["seed"] == 5
    assert result["video"]["url"].startswith("file://") and os.path.dirname(
        result["video"]["url"][len("file://"):]) == str(outdir)
    assert any("render-size" in e["message"] or "rendering at 48x80" in e["message"] for e in logs[-1])
    assert client.status(APP, enqueued[0]).metrics["inference_time"] > 0
    assert client.result(APP, enqueued[0]) == result


def test_queue_positions_and_cancel_leave_no_file(outdir):
    client = lfc.SyncClient()
    first = client.submit(APP, ARGS)
    second = client.submit(APP, ARGS)
    assert isinstance(second.status(), lfc.Queued) and second.status().position == 0
    second.cancel()  # still queued: cancelled at once
    assert second.status().error_type == "request_cancelled"
    deadline = time.monotonic() + 60
    while not isinstance(first.status(), lfc.InProgress):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    client.cancel(APP, first.request_id)  # running: stops at its next step
    done = list(first.iter_events(interval=0.05))[-1]
    assert done.error == "Request was cancelled" and done.error_type == "request_cancelled"
    with pytest.raises(lfc.FalClientHTTPError) as info:
        first.get()
    assert info.value.status_code == 400
    assert os.listdir(outdir) == []
    with pytest.raises(lfc.FalClientHTTPError) as info:
        first.cancel()
    assert info.value.status_code == 400  # already completed


def test_client_timeout_raises_fals_timeout_error_and_cancels(outdir):
    ids = []
    with pytest.raises(lfc.FalClientTimeoutError) as info:
        lfc.subscribe(APP, ARGS, client_timeout=1.5, on_enqueue=ids.append)
    assert info.value.request_id == ids[0] and info.value.timeout == 1.5
    assert list(lfc.sync_client.get_handle(APP, ids[0]).iter_events())[-1].error_type == "request_cancelled"
    with pytest.raises(lfc.FalClientTimeoutError):
        lfc.run(APP, ARGS, timeout=1.2)
    deadline = time.monotonic() + 60
    while os.listdir(outdir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert os.listdir(outdir) == []


def test_errors_are_fals_http_errors_and_value_errors():
    with pytest.raises(lfc.FalClientHTTPError) as info:
        lfc.submit(APP, dict(ARGS, num_frames=100))
    e = info.value
    assert isinstance(e, ValueError) and e.status_code == 422 and e.message[0]["loc"] == ["body", "num_frames"]
    assert "num_frames" in str(e) and "100" in str(e) and "481" in str(e)
    with pytest.raises(lfc.FalClientHTTPError, match="use_dmd") as info:
        lfc.run(APP, dict(ARGS, use_dmd="yes"))
    assert isinstance(info.value, TypeError)
    not_image = lfc.encode(b"plain text, not pixels " * 20, "image/png")
    with pytest.raises(lfc.FalClientHTTPError, match="image_url") as info:
        lfc.submit(APP, dict(ARGS, image_url=not_image))
    assert info.value.message[0]["loc"] == ["body", "image_url"]
    with pytest.raises(lfc.FalClientHTTPError, match="fal-ai/flux/dev") as info:
        lfc.submit("fal-ai/flux/dev", ARGS)
    assert info.value.status_code == 404
    with pytest.raises(lfc.FalClientHTTPError) as info:
        lfc.status(APP, "00000000-0000-0000-0000-000000000000")
    assert info.value.status_code == 404
    with pytest.raises(ValueError, match="Timeout must be greater"):
        lfc.submit(APP, ARGS, start_timeout=0.5)


def test_encode_upload_and_what_has_no_local_meaning(tmp_path):
    raw = open(EXAMPLE, "rb").read()
    uri = lfc.encode_file(EXAMPLE)
    assert uri.startswith("data:image/png;base64,") and base64.b64decode(uri.split(",", 1)[1]) == raw
    assert lfc.upload_file(EXAMPLE) == uri and lfc.upload(raw, "image/png") == uri
    assert lfc.encode("hi", "text/plain") == "data:text/plain;base64,aGk="
    pil = pytest.importorskip("PIL.Image")
    img = pil.new("RGB", (8, 8), (10, 20, 30))
    assert lfc.encode_image(img, "png").startswith("data:image/png;base64,")
    assert (lyra2.read_image(lfc.upload_image(img, "png")) == [10, 20, 30]).all()
    for call in (lambda: lfc.realtime(APP), lambda: lfc.stream(APP, {}), lambda: lfc.ws_connect(APP),
                 lambda: lfc.upload(raw, "image/png", lifecycle={"expiration_duration_seconds": 60}),
                 lambda: lfc.submit(APP, ARGS, webhook_url="https://example.com/hook")):
        with pytest.raises(lfc.FalClientError, match="not available in lyra2"):
            call()


def test_async_client_awaits_callbacks(outdir):
    seen = {"enqueue": 0, "updates": 0}
    client = lfc.AsyncClient(render_size=SMALL)

    async def on_enqueue(request_id):
        await asyncio.sleep(0)
        seen["enqueue"] += 1

    async def on_update(update):
        await asyncio.sleep(0)
        seen["updates"] += 1

    async def main():
        result = await client.subscribe(APP, ARGS, with_logs=True, on_enqueue=on_enqueue,
                                        on_queue_update=on_update, interval=0.05)
        handle = await client.submit(APP, dict(ARGS, seed=6))
        assert isinstance(handle, lfc.AsyncRequestHandle)
        again = await client.result(APP, handle.request_id)
        return result, again

    result, again = asyncio.run(main())
    assert result["seed"] == 5 and again["seed"] == 6 and seen["enqueue"] == 1 and seen["updates"] >= 2
    assert lfc.subscribe_async.__self__ is lfc.async_client and lfc.run_async.__self__ is lfc.async_client


def test_ply_path_adds_the_point_cloud_file_entry(outdir, tmp_path):
    """lyra2's ply_path option (subscribe/run(..., ply_path=...), as the module-level functions pass it to the
    queue): the run's point cloud is written there and the result gains a "point_cloud" file entry, as
    Video.to_fal() after save_ply(); a bad path is refused before the job is queued."""
    plyfile = pytest.importorskip("plyfile")
    ply = tmp_path / "cloud.ply"
    result = lfc.SyncClient(render_size=SMALL).subscribe(APP, ARGS, _extras={"ply_path": str(ply)})
    entry = result["point_cloud"]
    assert entry["url"] == ply.resolve().as_uri() and entry["file_name"] == "cloud.ply"
    assert entry["content_type"] == "application/octet-stream" and entry["file_size"] == os.path.getsize(ply)
    vertex = plyfile.PlyData.read(str(ply))["vertex"]
    assert vertex.count > 100 and [p.name for p in vertex.properties] == ["x", "y", "z", "red", "green", "blue"]
    assert "point_cloud" not in lfc.SyncClient(render_size=SMALL).subscribe(APP, ARGS)
    for bad, why in ((tmp_path / "cloud.txt", "must end in .ply"), (tmp_path / "no" / "c.ply", "does not exist")):
        with pytest.raises(ValueError, match=why):
            lfc.subscribe(APP, ARGS, ply_path=str(bad))
        with pytest.raises(ValueError, match=why):
            lyra2.zoom(EXAMPLE, "cup", ply_path=str(bad), progress=False)
