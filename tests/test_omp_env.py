"""lyra2/_omp_env.py: the extension's libgomp starts with idle threads sleeping (no spin-wait), the variable is
gone from the environment after `import lyra2`, and a user's own policy is kept."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = ("import sys; sys.path.insert(0, sys.argv[1]); import os, lyra2; "
         "print('after import:', os.environ.get('OMP_WAIT_POLICY'))")


def run_probe(**env_over):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(env_over, OMP_DISPLAY_ENV="TRUE")  # libgomp prints its settings when it is loaded
    r = subprocess.run([sys.executable, "-c", PROBE, ROOT], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout + r.stderr


def test_libgomp_waits_passively_by_default():
    out = run_probe()
    assert "OMP_WAIT_POLICY = 'PASSIVE'" in out, out
    assert "after import: None" in out  # not passed on to later OpenMP runtimes or child processes


def test_user_wait_policy_is_kept():
    out = run_probe(OMP_WAIT_POLICY="ACTIVE")
    assert "OMP_WAIT_POLICY = 'ACTIVE'" in out, out
    assert "after import: ACTIVE" in out
