"""bfrcore.cpu_allocator: large freed blocks are reused instead of being page-faulted again (glibc)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from tests.helpers import PROJECT_ROOT

PROBE = r"""
import json, resource, sys
import torch
from bfrcore.cpu_allocator import reuse_freed_memory
state = reuse_freed_memory() if sys.argv[1] == "apply" else "untouched"
torch.set_num_threads(1)
F = torch.nn.functional
x = torch.rand(1, 16, 128, 128)
w = torch.rand(16, 16, 3, 3)
def step():  # a decoder-like chain: upsample x2 twice, convolutions, residual adds (4 MiB to 64 MiB tensors)
    h = x
    for _ in range(2):
        h = F.interpolate(h, scale_factor=2, mode="bilinear")
        h = F.conv2d(h, w, padding=1)
        h = h + F.conv2d(F.leaky_relu(h, 0.2), w, padding=1)
    return float(h[0, 0, 0, 0])
faults = []
for _ in range(5):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    step()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"state": state, "faults": faults}))
"""


def _probe(mode: str, **env) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], cwd=PROJECT_ROOT, capture_output=True, text=True,
                         timeout=120, env={**os.environ, **env}, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_decoder_like_steps_stop_page_faulting_once_memory_is_kept():
    default = _probe("untouched")
    tuned = _probe("apply")
    assert tuned["state"].startswith("glibc heap reuse")
    # glibc's default gives the 16 MiB activations back to the OS and faults them in again on every step
    # (~20000 faults of 4 KiB a step here); kept, the steps after the first touch few or no new pages
    later_default, later_tuned = sum(default["faults"][1:]), sum(tuned["faults"][1:])
    assert later_default > 40000, default
    assert later_tuned < later_default / 4, (default, tuned)


def test_env_turns_it_off():
    r = _probe("apply", CELEBREF_CPU_ALLOCATOR="default")
    assert r["state"] == "default (CELEBREF_CPU_ALLOCATOR=default)"
