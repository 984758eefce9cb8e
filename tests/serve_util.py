"""Starting and stopping `lyra2 serve` for the tests: loopback only, free ports, every process killed at teardown."""
import os
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = "fal-ai/lyra-2/zoom"
EXAMPLE = os.path.join(ROOT, "examples", "coffee.png")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(**extra):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               LYRA2_NUM_THREADS="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    for name in ("FAL_RUN_HOST", "FAL_QUEUE_RUN_HOST", "FAL_KEY", "SSL_CERT_FILE"):
        env.pop(name, None)
    env.update(extra)
    return env


class ServerProcess:
    """One `python -m lyra2 serve` child; `start()` waits until /health answers 200."""

    def __init__(self, data_dir, args, port=None):
        self.data_dir = str(data_dir)
        self.args = list(args)
        self.port = port or free_port()
        self.proc = None
        self.log_path = os.path.join(self.data_dir, f"server-{self.port}.log")

    @property
    def cert(self):
        return os.path.join(self.data_dir, "tls", "cert.pem")

    def verify(self):
        """An SSL context that trusts this server's certificate (httpx's verify=)."""
        import ssl

        return ssl.create_default_context(cafile=self.cert)

    @property
    def url(self):
        return f"https://127.0.0.1:{self.port}"

    def start(self, timeout=90.0):
        import httpx

        os.makedirs(self.data_dir, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "lyra2", "serve", "--host", "127.0.0.1",
                                      "--port", str(self.port), "--data-dir", self.data_dir, *self.args],
                                     stdout=log, stderr=subprocess.STDOUT, env=child_env(), cwd=ROOT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"lyra2 serve exited with {self.proc.returncode}:\n{self.log()}")
            if os.path.exists(self.cert):
                try:
                    if httpx.get(self.url + "/health", verify=self.verify(), timeout=5.0).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"lyra2 serve did not answer /health within {timeout} s:\n{self.log()}")

    def log(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def terminate(self, timeout=60.0):
        """SIGTERM and wait; returns the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise


def patch_fal_client(monkeypatch, server):
    """Points the real fal_client at `server` the way FAL_RUN_HOST / FAL_QUEUE_RUN_HOST do (fal_client reads them
    once, at import, into these two URL prefixes) and trusts its certificate via SSL_CERT_FILE."""
    import fal_client.client as fc

    monkeypatch.setattr(fc, "RUN_URL_FORMAT", f"https://127.0.0.1:{server.port}/")
    monkeypatch.setattr(fc, "QUEUE_URL_FORMAT", f"https://127.0.0.1:{server.port}/queue/")
    monkeypatch.setenv("SSL_CERT_FILE", server.cert)
