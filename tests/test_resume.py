"""Exact resume, the hard way: ``python -m tl_lightning fit`` in a subprocess, SIGKILLed mid-epoch after a
checkpoint, resumed with ``--ckpt_path`` into the same run directory. The per-step losses of the killed +
resumed run equal an uninterrupted run's bit for bit, and ``metrics.csv`` keeps the steps before the resume.

Data: 40 quick-start trajectories cut to 256 tokens, global batch 4 (one process x 4, or two DDP processes
x 2 on gloo): 9-10 batches per epoch, so the checkpoint at step 4 is mid-epoch and the run crosses into
epoch 1 after the resume. Validation runs every 3 steps: the old loader drew the resumed epoch's order
before Lightning set the epoch only when a validation loop was set up.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from sft_helpers import TINY

pytestmark = [pytest.mark.slow, pytest.mark.multiprocess]

TESTS = Path(__file__).resolve().parent
# Epochs are 10 batches (8 packed): the run is killed in its second epoch, after the checkpoint at step 12, so
# the resume restores a position inside an epoch other than the first (a loader that restores its position before
# Lightning's set_epoch, as torchdata's StatefulDataLoader does, replays the wrong epoch's order there).
MAX_STEPS, CKPT_EVERY, KILL_AT = 16, 6, 13
LAST_CKPT = KILL_AT // CKPT_EVERY * CKPT_EVERY


def _config(tmp_path: Path, group_by_length: bool, devices: int, packing: bool = False) -> Path:
    from tl_lightning.data.paths import resolve_data_path

    train, val = tmp_path / "train.jsonl", tmp_path / "val.jsonl"
    if not train.exists():
        train.write_text("".join(resolve_data_path("quickstart").read_text().splitlines(keepends=True)[:40]))
        val.write_text("".join(resolve_data_path("quickstart:val").read_text().splitlines(keepends=True)[:8]))
    cfg = {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu", "devices": devices, "strategy": "ddp" if devices > 1 else "auto",
            "max_steps": MAX_STEPS, "log_every_n_steps": 1, "val_check_interval": CKPT_EVERY, "limit_val_batches": 1,
            "num_sanity_val_steps": 0,
            "enable_progress_bar": False, "enable_model_summary": False,
            "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                       "init_args": {"save_dir": "${trainer.default_root_dir}", "name": "", "version": ""}},
            "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                           "init_args": {"every_n_train_steps": CKPT_EVERY, "save_last": True, "save_top_k": 0}}],
        },
        "model": {"class_path": "tl_lightning.modules.sft.TLSFTModule",
                  "init_args": {"tiny_config": TINY, "lr": 1e-2, "warmup_ratio": 0.1}},
        "data": {"class_path": "tl_lightning.data.datamodule.ToolTrajectoryDataModule",
                 "init_args": {"train_path": str(train), "val_path": str(val), "template": "python_sig", "max_length": 256,
                               "batch_size": 4 // devices, "group_by_length": group_by_length, "cache": False}},
    }
    if packing:  # 33 trajectories of <= 256 tokens, ~4 per global batch of 1024 tokens: 8 batches per epoch
        cfg["data"]["init_args"].update(packing=True, max_tokens_per_batch=1024 // devices)
    path = tmp_path / f"cfg-{group_by_length}-{devices}-{packing}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
            "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}


def _fit(config: Path, root: Path, *extra: str) -> None:
    cmd = [sys.executable, "-m", "tl_lightning", "fit", "--config", str(config), f"--trainer.default_root_dir={root}", *extra]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _fit_and_kill(config: Path, root: Path) -> None:
    """Start a run that stalls after step KILL_AT (last.ckpt is step LAST_CKPT by then) and SIGKILL its process group."""
    marker = root.parent / f"{root.name}.stalled"
    stall = json.dumps({"class_path": "sft_helpers.StallAfterStep", "init_args": {"step": KILL_AT, "marker": str(marker)}})
    cmd = [sys.executable, "-m", "tl_lightning", "fit", "--config", str(config), f"--trainer.default_root_dir={root}",
           f"--trainer.callbacks+={stall}"]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group: the DDP worker dies with it
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the run never reached the stall step"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()


def _losses(root: Path) -> dict[int, str]:
    """step -> train/loss as written (strings: the comparison is exact)."""
    with open(root / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/loss")]
    steps = [int(r["step"]) for r in rows]
    assert len(steps) == len(set(steps)), f"duplicate steps in {root / 'metrics.csv'}: {sorted(steps)}"
    return {int(r["step"]): r["train/loss"] for r in rows}


@pytest.mark.parametrize("devices", [1, 2], ids=["1proc", "ddp2"])
@pytest.mark.parametrize(("group_by_length", "packing"), [(False, False), (True, False), (False, True)],
                         ids=["random", "grouped", "packed"])
def test_sigkilled_run_resumes_with_the_losses_of_an_uninterrupted_run(tmp_path, group_by_length, packing, devices):
    config = _config(tmp_path, group_by_length, devices, packing)
    full, run = tmp_path / "full", tmp_path / "run"
    _fit(config, full)
    _fit_and_kill(config, run)
    ckpt = run / "checkpoints" / "last.ckpt"
    import torch

    assert torch.load(ckpt, weights_only=False, map_location="cpu")["global_step"] == LAST_CKPT
    before = _losses(run)  # flushed at the checkpoint, before the kill
    assert set(range(LAST_CKPT)) <= set(before), sorted(before)

    _fit(config, run, f"--ckpt_path={ckpt}")
    expected, got = _losses(full), _losses(run)
    assert sorted(expected) == list(range(MAX_STEPS))
    assert got == expected  # every step, before and after the resume, bit for bit
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.ckpt"]  # no last-v1.ckpt
    assert json.loads((run / "run_status.json").read_text())["completed"] is True
