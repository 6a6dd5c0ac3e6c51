"""Every YAML under configs/ parses and instantiates (model, data, trainer) through the real CLI.

Rules, so configs added later are covered without editing this file:
- A W&B sweep file (top-level ``parameters`` plus ``method`` or ``program``) is not a LightningCLI config:
  its method is checked, and one run of its grid (first value of every parameter) is instantiated on the
  configs its ``command`` names.
- A file that lacks ``model`` or ``data`` is an override fragment: it is instantiated on top of
  ``configs/quickstart.yaml`` (how the README composes them: repeated ``--config``).
- Values starting with ``/path/to/`` are placeholders users must override, and values starting with ``runs/``
  are outputs of an earlier run (e.g. the SFT quick start's export that PPO starts from): such a model or
  tokenizer becomes ``tl-tiny`` (so the 7B paper config is checked without 7B weights); file paths (keys
  naming a path, file or dir) stay, since datamodules read files in ``prepare_data``, not in ``__init__``.
- Trainers go to 1 CPU device; a GPU-only strategy (Lightning's ``fsdp``) is instantiated on its own,
  then replaced by ``auto``. Tests run in a temp dir so loggers write nothing into the repository.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import yaml

from tl_lightning.cli import TLCLI
from tl_lightning.modules.sft import TLSFTModule

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
BASE = CONFIGS / "quickstart.yaml"
ALL = sorted(CONFIGS.rglob("*.yaml"))
PLACEHOLDERS = ("/path/to/", "runs/")


def _load(path: Path) -> dict:
    data = yaml.safe_load(path.read_text()) or {}
    assert isinstance(data, dict), f"{path}: top level must be a mapping"
    return data


def is_sweep(cfg: dict) -> bool:
    return "parameters" in cfg and ("method" in cfg or "program" in cfg)


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _placeholder_overrides(cfg: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out += _placeholder_overrides(v, key + ".")
        elif isinstance(v, str) and v.startswith(PLACEHOLDERS) and not any(s in k for s in ("path", "file", "dir")):
            out.append(f"--{key}=tl-tiny")
    return out


def _strategy_overrides(trainer: dict) -> list[str]:
    strategy = trainer.get("strategy")
    class_path = strategy.get("class_path", "") if isinstance(strategy, dict) else str(strategy or "")
    if "FSDPStrategy" in class_path or class_path.startswith("fsdp"):
        if isinstance(strategy, dict):  # the class and its arguments must still resolve
            module, _, name = strategy["class_path"].rpartition(".")
            getattr(importlib.import_module(module), name)(**strategy.get("init_args", {}))
        return ["--trainer.strategy=auto"]
    return []


def instantiate(files: list[Path], extra: list[str] = ()) -> TLCLI:
    merged: dict = {}
    for f in files:
        merged = _merge(merged, _load(f))
    args = []
    for f in files:
        args += ["--config", str(f)]
    args += ["--trainer.accelerator=cpu", "--trainer.devices=1", *_strategy_overrides(merged.get("trainer", {}))]
    args += _placeholder_overrides(merged) + list(extra)
    return TLCLI(args=args, run=False)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["tl-lightning"])


def test_configs_exist():
    names = {p.relative_to(CONFIGS).as_posix() for p in ALL}
    for required in ["quickstart.yaml", "paper/sft_codellama7b.yaml", "trainer/cpu.yaml", "trainer/ddp.yaml",
                     "trainer/fsdp.yaml", "trainer/fsdp2.yaml", "logger/csv.yaml", "logger/wandb.yaml",
                     "experiments/sft_none.yaml", "experiments/sft_mae.yaml", "experiments/sft_pkt.yaml",
                     "experiments/sft_mae_pkt.yaml"]:
        assert required in names


@pytest.mark.parametrize("path", [p for p in ALL if not is_sweep(_load(p))], ids=lambda p: p.relative_to(CONFIGS).as_posix())
def test_config_instantiates(path):
    cfg = _load(path)
    files = [path] if {"model", "data"} <= cfg.keys() else [BASE, path]
    cli = instantiate(files)
    assert cli.model is not None and cli.datamodule is not None and cli.trainer is not None
    if isinstance(cli.model, TLSFTModule):  # (an evaluation module may prefer its checkpoint's own tokenizer)
        assert cli.model.tokenizer is cli.datamodule.tokenizer


@pytest.mark.parametrize(("name", "mae", "pkt"), [("none", False, False), ("mae", True, False), ("pkt", False, True),
                                                  ("mae_pkt", True, True)])
def test_ablation_files_flip_only_the_flags(name, mae, pkt):
    cli = instantiate([BASE, CONFIGS / "experiments" / f"sft_{name}.yaml"])
    hp = cli.model.hparams
    assert (hp.use_mae, hp.use_pkt) == (mae, pkt) and hp.w_max == 9.0


def test_paper_config_has_the_paper_settings():
    cfg = _load(CONFIGS / "paper" / "sft_codellama7b.yaml")
    init = cfg["model"]["init_args"]
    assert (init["lr"], init["lr_schedule"], init["warmup_ratio"], init["w_max"]) == (1e-6, "cosine", 0.01, 9.0)
    assert init["use_mae"] and init["use_pkt"]
    assert cfg["trainer"]["precision"] == "bf16-mixed" and cfg["trainer"]["max_epochs"] == 1
    assert cfg["trainer"]["strategy"]["class_path"].endswith("FSDPStrategy")


@pytest.mark.parametrize("path", [p for p in ALL if is_sweep(_load(p))], ids=lambda p: p.relative_to(CONFIGS).as_posix())
def test_sweep_file(path):
    sweep = _load(path)
    assert sweep.get("method") in {"grid", "random", "bayes"}
    configs = [CONFIGS.parent / c for c in sweep.get("command", []) if str(c).endswith(".yaml")]
    assert configs and all(c.exists() for c in configs), f"{path}: command must name existing configs"
    extra = []
    for key, spec in sweep["parameters"].items():
        value = spec["values"][0] if "values" in spec else spec.get("value", spec.get("min"))
        extra.append(f"--{key}={str(value).lower() if isinstance(value, bool) else value}")
    cli = instantiate(configs, extra)
    assert cli.model is not None
