"""A fit's run directory under real processes: SIGKILL at several points of the export never leaves a directory
that a rerun or resume takes for finished, a second fit into a live run directory is refused in one line, and a
run whose loss turns non-finite stops, naming the step, with no export and a status that says why.

Every fit here is ``python -m tl_lightning fit`` on 16 quick-start trajectories with a 2-layer, 32-wide model.
A kill point is reached by a driver that patches one function of the real code path to SIGKILL its own process
(the patched function is named in each case), then runs the CLI's ``main``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sft_helpers import TINY

from tl_lightning.__main__ import main
from tl_lightning.experiments.cell import fit_resume_args
from tl_lightning.rundir import fit_finished, hf_export_problem, read_run_status

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
QUICKSTART = ROOT / "configs" / "quickstart.yaml"


@pytest.fixture(autouse=True)
def _no_pytest_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["tl-lightning"])


def _fit_args(root: Path, small_data, *extra: str, tiny: bool = True) -> list[str]:
    train, val = small_data
    model = [f"--model.init_args.tiny_config={json.dumps(TINY)}"] if tiny else []
    return ["fit", "--config", str(QUICKSTART), f"--trainer.default_root_dir={root}", "--trainer.max_steps=2",
            "--trainer.val_check_interval=2", "--trainer.limit_val_batches=1", "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false", *model, f"--data.init_args.train_path={train}",
            f"--data.init_args.val_path={val}", "--data.init_args.max_length=256", "--data.init_args.cache=false", *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
            "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT), os.environ.get("PYTHONPATH", "")])}


# Patches one function so that reaching it SIGKILLs this process, then runs the CLI. argv[1]: the kill point.
DRIVER = textwrap.dedent('''
    import os, signal, sys

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    point, argv = sys.argv[1], sys.argv[2:]
    if point == "tokenizer_save":  # the export's weights are written, its tokenizer is not
        import transformers
        real_save = transformers.PreTrainedTokenizerBase.save_pretrained
        def save(self, directory, *a, **k):  # checkpoints save the tokenizer too: only the export's save dies
            if ".hf.partial" in str(directory):
                die()
            return real_save(self, directory, *a, **k)
        transformers.PreTrainedTokenizerBase.save_pretrained = save
    elif point == "status_write":  # the export is in place, run_status.json not yet written
        import tl_lightning.callbacks
        tl_lightning.callbacks.write_json_atomic = die
    elif point == "status_rename":  # run_status.json is written to its temporary name, not renamed
        real_replace = os.replace
        def replace(src, dst, *a, **k):
            if str(dst).endswith("run_status.json"):
                die()
            return real_replace(src, dst, *a, **k)
        os.replace = replace
    elif point == "export_rename":  # a re-export: the old hf/ is moved aside, the new one not yet moved in
        real_rename = os.rename
        def rename(src, dst, *a, **k):
            if str(src).endswith(".hf.partial"):
                die()
            return real_rename(src, dst, *a, **k)
        os.rename = rename
    from tl_lightning.__main__ import main
    sys.exit(main(argv))
''')


def _run(args: list[str], point: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", DRIVER, point or "none", *args]
    return subprocess.run(cmd, env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def _not_finished(root: Path) -> list[str]:
    """What a rerun would do with ``root``; fails if the directory passes for a finished fit."""
    assert not fit_finished(root)
    resume = fit_resume_args(root)
    assert resume is not None, f"{root} passes for finished: {sorted(p.name for p in root.iterdir())}"
    return resume


@pytest.mark.slow
def test_sigkill_at_any_point_of_the_export_never_leaves_a_finished_looking_run(tmp_path, small_data):
    killed = {}
    for point in ("tokenizer_save", "status_write", "status_rename"):
        root = tmp_path / point
        proc = _run(_fit_args(root, small_data), point)
        assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
        killed[point] = _not_finished(root)
        assert killed[point][0] == "--ckpt_path"  # training finished: its last checkpoint is there to resume
        assert not (root / "run_status.json").exists()  # the status comes last: a kill before it leaves none
    assert hf_export_problem(tmp_path / "tokenizer_save" / "hf") is not None  # never moved into place
    assert hf_export_problem(tmp_path / "status_write" / "hf") is None  # whole, but without a status it is not trusted
    # Resume the run killed before its status; the resume re-exports over the whole hf/ and is killed mid-replace.
    root = tmp_path / "status_write"
    proc = _run(_fit_args(root, small_data, *killed["status_write"]), "export_rename")
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert not (root / "hf").exists() and (root / ".hf.partial").is_dir()
    resume = _not_finished(root)
    # A plain resume finishes it: a whole export, then a completed status.
    proc = _run(_fit_args(root, small_data, *resume))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert fit_finished(root) and fit_resume_args(root) is None
    assert read_run_status(root)["completed"] is True and not (root / ".hf.partial").exists()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    AutoModelForCausalLM.from_pretrained(root / "hf")
    AutoTokenizer.from_pretrained(root / "hf")


@pytest.mark.slow
def test_a_second_fit_into_a_live_run_directory_is_refused_in_one_line(tmp_path, small_data):
    root = tmp_path / "run"
    marker = tmp_path / "stalled"
    stall = json.dumps({"class_path": "sft_helpers.StallAfterStep", "init_args": {"step": 1, "marker": str(marker)}})
    first = subprocess.Popen([sys.executable, "-m", "tl_lightning", *_fit_args(root, small_data, f"--trainer.callbacks+={stall}")],
                             env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert first.poll() is None, first.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the first run never reached its stall step"
            time.sleep(0.2)
        before = sorted(p.name for p in root.iterdir())
        for extra in ((), ("--overwrite=true",)):  # --overwrite would have deleted the live run's outputs
            second = subprocess.run([sys.executable, "-m", "tl_lightning", *_fit_args(root, small_data, *extra)],
                                    env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=240)
            assert second.returncode == 1
            err = second.stderr.strip().splitlines()
            assert err[-2:] == [f"error: run directory {root.resolve()} is in use by another run (a live process holds "
                                "its lock); wait for it to end or choose another --trainer.default_root_dir",
                                "(set TL_LIGHTNING_TRACEBACK=1 for the full traceback)"], err
            assert sum(line.startswith("error:") for line in err) == 1
            assert sorted(p.name for p in root.iterdir()) == before
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        first.stderr.close()
    # The kernel dropped the lock with the killed process: resuming works without any cleanup.
    proc = subprocess.run([sys.executable, "-m", "tl_lightning", *_fit_args(root, small_data, *fit_resume_args(root))],
                          env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert fit_finished(root)


def test_a_diverged_run_stops_naming_the_step_with_no_export(tmp_path, small_data, capsys):
    root = tmp_path / "run"
    args = _fit_args(root, small_data, "--model=sft_helpers.NaNLossFromStep", "--model.init_args.nan_from=3",
                     f"--model.init_args.tiny_config={json.dumps(TINY)}", "--trainer.max_steps=8",
                     "--trainer.log_every_n_steps=5", "--trainer.val_check_interval=4")
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == ("error: training diverged: the loss became non-finite at step 3 (see metrics.csv); the run stops "
                      "without an export (lower the learning rate or clip gradients)")
    status = read_run_status(root)
    assert status["completed"] is False and status["stopped_by"] == "diverged" and status["diverged_at_step"] == 3
    assert status["global_step"] == 5  # stopped at the first check (every log_every_n_steps=5 steps), not at 8
    assert not (root / "hf").exists() and not (root / ".hf.partial").exists()
    assert not fit_finished(root)


def test_the_issue_repro_lr_1e6_is_caught(tmp_path, small_data, capsys):
    """The reported run: the quick-start model and config at lr 1e6 for 20 steps reached train/loss nan, and ended
    "completed" with NaN in every exported tensor."""
    root = tmp_path / "run"
    assert main(_fit_args(root, small_data, "--model.init_args.lr=1e6", "--trainer.max_steps=20",
                          "--trainer.val_check_interval=4", tiny=False)) == 1
    assert "training diverged" in capsys.readouterr().err
    status = read_run_status(root)
    assert status["stopped_by"] == "diverged" and not (root / "hf").exists()


# ---------------------------------------------------------------------------------------- pieces
class _ManualNaN(__import__("lightning").pytorch.LightningModule):
    """Manual optimization (as the RL modules): training_step returns nothing and logs a loss that turns NaN."""

    def __init__(self, nan_from: int) -> None:
        super().__init__()
        import torch

        self.automatic_optimization = False
        self.layer = torch.nn.Linear(2, 1)
        self.nan_from = nan_from

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        loss = self.layer(batch[0]).pow(2).mean()
        opt.zero_grad()
        self.manual_backward(loss)
        opt.step()
        self.log("train/policy_loss", loss * (float("nan") if self.global_step > self.nan_from else 1.0))

    def configure_optimizers(self):
        import torch

        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        import torch

        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(64, 2)), batch_size=2)


def test_the_guard_reads_the_logged_loss_of_a_manual_optimization_module(tmp_path):
    from lightning.pytorch import Trainer

    from tl_lightning.callbacks import DivergenceError, DivergenceGuard

    trainer = Trainer(max_steps=30, log_every_n_steps=4, callbacks=[DivergenceGuard()], logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      default_root_dir=tmp_path)
    with pytest.raises(DivergenceError, match=r"train/policy_loss is nan at step 7"):
        trainer.fit(_ManualNaN(nan_from=5))
    assert trainer.global_step == 8  # the first check after the loss turned NaN (step 6): every 4 steps


def test_the_guard_refuses_non_finite_weights_at_the_end(tmp_path):
    """A loss can stay finite while a weight is not (e.g. an unused parameter): the export is refused all the same."""
    import torch
    from lightning.pytorch import Trainer

    from tl_lightning.callbacks import DivergenceError, DivergenceGuard

    class Unused(_ManualNaN):
        def __init__(self) -> None:
            super().__init__(nan_from=10**6)
            self.unused = torch.nn.Parameter(torch.tensor([float("inf")]))

    trainer = Trainer(max_steps=3, callbacks=[DivergenceGuard()], logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    with pytest.raises(DivergenceError, match=r"the weights are not finite \(unused\) after step 3"):
        trainer.fit(Unused())


def test_hf_export_problem_reads_sharded_indexes_and_cut_shards(tmp_path):
    import struct

    def shard(path: Path, n: int) -> None:
        header = json.dumps({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}}).encode()
        path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(4 * n))

    d = tmp_path / "hf"
    d.mkdir()
    assert "no readable config.json" in hf_export_problem(d)
    (d / "config.json").write_text("{}")
    assert "model.safetensors is missing" in hf_export_problem(d)
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": names[0], "b": names[1]}}))
    shard(d / names[0], 3)
    assert f"{names[1]} is missing" in hf_export_problem(d)
    shard(d / names[1], 5)
    assert "no tokenizer" in hf_export_problem(d)
    (d / "tokenizer_config.json").write_text("{}")
    assert hf_export_problem(d) is None
    full = (d / names[1]).stat().st_size
    (d / names[1]).write_bytes((d / names[1]).read_bytes()[:-1])  # the last byte of the last tensor is gone
    assert hf_export_problem(d).endswith(f"{names[1]} is truncated ({full - 1} of {full} bytes)")


def test_replace_dir_and_write_json_atomic(tmp_path):
    from tl_lightning.rundir import replace_dir, write_json_atomic

    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "x").write_text("2")
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "x").write_text("1")
    replace_dir(tmp_path / "new", tmp_path / "hf")
    assert (tmp_path / "hf" / "x").read_text() == "2" and sorted(p.name for p in tmp_path.iterdir()) == ["hf"]
    write_json_atomic(tmp_path / "s.json", {"a": 1})
    write_json_atomic(tmp_path / "s.json", {"a": 2})
    assert json.loads((tmp_path / "s.json").read_text()) == {"a": 2} and sorted(p.name for p in tmp_path.iterdir()) == ["hf", "s.json"]
