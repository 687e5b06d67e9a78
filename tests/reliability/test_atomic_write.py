"""A process SIGKILLed in the middle of ``atomic_torch_save`` never leaves a truncated
checkpoint: the target is absent or the old complete file, and it loads fine afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from ucvgl.shared.fileio import atomic_torch_save

WRITER = """
import sys, torch
from ucvgl.shared.fileio import atomic_torch_save

# About 160 MiB: long enough to be caught mid-write.
weights = [torch.full((256, 1024), float(i)) for i in range(160)]
big = {"epoch": int(sys.argv[2]), "weights": weights}
print("writing", flush=True)
atomic_torch_save(big, sys.argv[1])
print("done", flush=True)
"""


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def kill_mid_write(target: Path, epoch: int) -> None:
    """Start a writer of ``target`` and SIGKILL it once its temporary file is growing."""
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target), str(epoch)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout.readline().strip() == "writing"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            tmps = temp_files(target.parent)
            if tmps and tmps[0].stat().st_size > 1024 * 1024:
                break
            assert process.poll() is None, "the writer finished before it could be killed"
            time.sleep(0.005)
        else:
            raise AssertionError("the writer never started writing")
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL


def test_kill_during_atomic_torch_save_leaves_no_truncated_file(tmp_path):
    target = tmp_path / "checkpoint.pt"
    kill_mid_write(target, epoch=1)
    assert not target.exists()  # never a partial target
    assert temp_files(tmp_path)  # the half-written temporary file is all that is left

    atomic_torch_save({"epoch": 3, "weights": [torch.ones(4)]}, target)
    kill_mid_write(target, epoch=4)
    resumed = torch.load(target, map_location="cpu", weights_only=False)  # loads fine
    assert resumed["epoch"] == 3 and torch.equal(resumed["weights"][0], torch.ones(4))
