import os
import subprocess
import sys

from moslim.threads import SPIN_COUNT, configure_openmp


def test_short_spin_is_the_default_when_the_user_set_nothing():
    env = {"PATH": "/bin"}
    assert configure_openmp(env) == f"GOMP_SPINCOUNT={SPIN_COUNT}"
    assert env == {"PATH": "/bin", "GOMP_SPINCOUNT": SPIN_COUNT}


def test_a_wait_policy_the_user_set_is_kept():
    for name, value in [("OMP_WAIT_POLICY", "PASSIVE"), ("GOMP_SPINCOUNT", "0")]:
        env = {name: value}
        assert configure_openmp(env) == f"{name}={value} (set by the user)"
        assert env == {name: value}


def test_the_command_line_sets_it_before_torch_loads():
    # libgomp reads the variable once, when torch loads it: set later, it would do nothing
    code = ("import sys, moslim.threads as t; f = t.configure_openmp\n"
            "t.configure_openmp = lambda *a: print('torch loaded:', 'torch' in sys.modules) or f(*a)\n"
            "import moslim.cli, os; print(os.environ['GOMP_SPINCOUNT'])")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:2] == ["torch loaded: False", SPIN_COUNT]
