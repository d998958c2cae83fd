"""chanformer asks OpenMP for passive waiting before torch loads libgomp (see chanformer/__init__.py)."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = """
import builtins, os
real_import = builtins.__import__
at_torch = []
def watch(name, *args, **kwargs):
    if name == "torch" and not at_torch:
        at_torch.append(os.environ.get("OMP_WAIT_POLICY"))
    return real_import(name, *args, **kwargs)
builtins.__import__ = watch
import chanformer
print(at_torch[0], os.environ["OMP_WAIT_POLICY"])
"""


def _probe(env: dict[str, str]) -> str:
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True).stdout.strip()


def test_passive_waiting_is_set_before_torch_is_first_imported() -> None:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    assert _probe(env) == "PASSIVE PASSIVE"


def test_a_policy_in_the_environment_wins() -> None:
    assert _probe(os.environ | {"OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE ACTIVE"
