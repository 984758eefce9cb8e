"""One worker process of `lyra2 serve` (started by the server, one per GPU: `python -m lyra2.serve.worker_main`).

Processes, not threads: each sees only its GPU (CUDA_VISIBLE_DEVICES, set by the server), holds its own
networks, and a crash in one cannot take the server or the other jobs down (the server re-queues its job and
starts a new worker). Signals from the server: SIGTERM = finish the current job, then exit; SIGUSR1 = stop the
current job at its next step, re-queue it, exit. When the server dies (even by SIGKILL) the kernel kills the
worker too (PR_SET_PDEATHSIG), so a restarted server never races an orphan for the same job."""
import argparse
import ctypes
import json
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def _die_with_parent():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the parent-pid check in Worker.alive still stops work at the next step


def main(argv=None):
    p = argparse.ArgumentParser(prog="lyra2.serve.worker_main")
    p.add_argument("--db", required=True)
    p.add_argument("--results-dir", required=True)
    p.add_argument("--options", default="{}", help="JSON: checkpoint_dir, device, mode")
    p.add_argument("--render-size", default="", help="HxW or empty")
    p.add_argument("--parent-pid", type=int, required=True)
    ns = p.parse_args(argv)
    _die_with_parent()
    if os.getppid() != ns.parent_pid:
        return 0  # the server is already gone

    from .jobs import JobStore, ServerOutputs, Worker

    render_size = tuple(int(v) for v in ns.render_size.lower().split("x")) if ns.render_size else None
    store = JobStore(ns.db, poll_s=0.1)
    worker = Worker(store, ServerOutputs(ns.results_dir), json.loads(ns.options),
                    name=f"lyra2-serve-worker-{os.getpid()}", render_size=render_size)
    worker.alive = lambda: os.getppid() == ns.parent_pid
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    signal.signal(signal.SIGUSR1, lambda *_: worker.stop(interrupt=True))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the server's terminal is the server's to handle
    try:
        worker.run_until_stopped()
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
