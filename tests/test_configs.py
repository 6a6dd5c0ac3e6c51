"""Every YAML under configs/ parses and instantiates (model, data, trainer) through the real CLI.

Rules, so configs added later are covered without editing this file:
- A W&B sweep file (top-level ``parameters`` plus ``method`` or ``program``) is not a LightningCLI config:
  its method is checked, and one run of its grid (first value of every parameter) is instantiated with the
  arguments its ``command`` names.
- A component file sits in its slot: ``logger/`` -> ``--trainer.logger``, ``callbacks/`` ->
  ``--trainer.callbacks``, ``model/`` -> ``--model``, ``data/`` -> ``--data``, on top of the quick start that
  uses its kind (``ppo_quickstart.yaml`` for PPO and prompt files, else ``quickstart.yaml``). Any other file
  that lacks ``model`` or ``data`` (``trainer/``, ``experiments/``) is an override fragment: a second
  ``--config`` on top of ``configs/quickstart.yaml`` (how the README composes them).
- Files compose others (``config: trainer/cpu.yaml``, ``trainer.logger: logger/csv.yaml``); the resolved
  config is read back from the CLI's own parser. A ``base.yaml`` is the shared part of its folder's files
  (``config: base.yaml`` in each): it is instantiated through every one of them. Values starting with ``/path/to/`` are placeholders users
  must override, and values starting with ``runs/`` are outputs of an earlier run (e.g. the SFT quick
  start's export that PPO starts from): such a model or tokenizer becomes ``tl-tiny`` (so the 7B paper
  config is checked without 7B weights), such a data file the quick-start data.
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
PPO_BASE = CONFIGS / "ppo_quickstart.yaml"
ALL = sorted(CONFIGS.rglob("*.yaml"))
PLACEHOLDERS = ("/path/to/", "runs/")
SLOTS = {"logger": "--trainer.logger", "callbacks": "--trainer.callbacks", "model": "--model", "data": "--data"}


def _load(path: Path):
    return yaml.safe_load(path.read_text())


def is_sweep(cfg) -> bool:
    return isinstance(cfg, dict) and "parameters" in cfg and ("method" in cfg or "program" in cfg)


class _Resolved(Exception):
    pass


class _ParseOnly(TLCLI):
    """Parses like the real CLI, then stops before checks and instantiation: the resolved config."""

    def before_instantiate_classes(self) -> None:
        raise _Resolved(self.config.as_dict())


def resolve(args: list[str]) -> dict:
    with pytest.raises(_Resolved) as exc:
        _ParseOnly(args=args, run=False)
    return exc.value.args[0]


def _placeholder_overrides(cfg: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out += _placeholder_overrides(v, key + ".")
        elif isinstance(v, str) and v.startswith(PLACEHOLDERS):
            out.append(f"--{key}=quickstart" if k.endswith("_path") else f"--{key}=tl-tiny")
    return out


def _strategy_overrides(trainer: dict) -> list[str]:
    strategy = trainer.get("strategy")
    class_path = strategy.get("class_path", "") if isinstance(strategy, dict) else str(strategy or "")
    if "FSDPStrategy" in class_path or class_path.startswith("fsdp"):
        if isinstance(strategy, dict):  # the class and its arguments must still resolve
            module, _, name = strategy["class_path"].rpartition(".")
            init = {k: v for k, v in (strategy.get("init_args") or {}).items() if v is not None}
            getattr(importlib.import_module(module), name)(**init)
        return ["--trainer.strategy=auto"]
    return []


def instantiate_args(args: list[str]) -> TLCLI:
    resolved = resolve(list(args))
    args = list(args) + ["--trainer.accelerator=cpu", "--trainer.devices=1", *_strategy_overrides(resolved["trainer"])]
    args += _placeholder_overrides({k: v for k, v in resolved.items() if k in ("model", "data")})
    return TLCLI(args=args, run=False)


def instantiate(files: list[Path], extra: list[str] = ()) -> TLCLI:
    args = []
    for f in files:
        args += ["--config", str(f)]
    return instantiate_args(args + list(extra))


def args_for(path: Path) -> list[str]:
    rel = path.relative_to(CONFIGS)
    slot = SLOTS.get(rel.parts[0]) if len(rel.parts) > 1 else None
    if slot:
        base = PPO_BASE if ("ppo" in rel.name or "prompt" in rel.name) else BASE
        return ["--config", str(base), slot, str(path)]
    cfg = _load(path) or {}
    full = "config" in cfg or {"model", "data"} <= cfg.keys()
    return ["--config", str(path)] if full else ["--config", str(BASE), "--config", str(path)]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["tl-lightning"])


def test_configs_exist():
    names = {p.relative_to(CONFIGS).as_posix() for p in ALL}
    for required in ["quickstart.yaml", "paper/sft_codellama7b.yaml", "trainer/cpu.yaml", "trainer/ddp.yaml",
                     "callbacks/sft.yaml", "callbacks/ppo.yaml", "model/sft_tiny.yaml", "data/quickstart_sft.yaml",
                     "trainer/fsdp.yaml", "trainer/fsdp2.yaml", "logger/csv.yaml", "logger/wandb.yaml",
                     "experiments/sft_none.yaml", "experiments/sft_mae.yaml", "experiments/sft_pkt.yaml",
                     "experiments/sft_mae_pkt.yaml"]:
        assert required in names


@pytest.mark.parametrize("path", [p for p in ALL if not is_sweep(_load(p)) and p.name != "base.yaml"],
                         ids=lambda p: p.relative_to(CONFIGS).as_posix())
def test_config_instantiates(path):
    cli = instantiate_args(args_for(path))
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
    cfg = resolve(["--config", str(CONFIGS / "paper" / "sft_codellama7b.yaml")])
    init = cfg["model"]["init_args"]
    assert (init["lr"], init["lr_schedule"], init["warmup_ratio"], init["w_max"]) == (1e-6, "cosine", 0.01, 9.0)
    assert init["use_mae"] and init["use_pkt"]
    assert cfg["trainer"]["precision"] == "bf16-mixed" and cfg["trainer"]["max_epochs"] == 1
    assert cfg["trainer"]["strategy"]["class_path"].endswith("FSDPStrategy")
    assert str(cfg["trainer"]["strategy"]["init_args"]["sharding_strategy"]).endswith("FULL_SHARD")


def test_base_files_are_composed_by_every_sibling():
    bases = [p for p in ALL if p.name == "base.yaml"]
    assert bases
    for base in bases:
        siblings = [p for p in base.parent.glob("*.yaml") if p != base]
        assert siblings and all(_load(p).get("config") == "base.yaml" for p in siblings), base


def test_eval_files_hold_only_what_differs_from_the_base():
    """Each benchmark's file: the benchmark, its path, the scoring mode and the template (plus a category or a
    batch size), as dotted overrides; the classes and the trainer are the base's."""
    for path in sorted((CONFIGS / "eval").glob("*.yaml")):
        if path.name == "base.yaml":
            continue
        raw = _load(path)
        assert set(raw) - {"config"} <= {f"model.init_args.{k}" for k in ("template", "mode")} | {
            f"data.init_args.{k}" for k in ("benchmark", "path", "category", "batch_size")}, path
        cfg = resolve(["--config", str(path)])
        assert cfg["model"]["class_path"].endswith("TLEvalModule") and cfg["trainer"]["logger"] is False, path


def test_paper_grpo_is_the_paper_ppo_with_the_group_baseline():
    raw = _load(CONFIGS / "paper" / "grpo_codellama7b.yaml")
    assert raw["config"] == "ppo_codellama7b.yaml" and len(raw) <= 15
    ppo = resolve(["--config", str(CONFIGS / "paper" / "ppo_codellama7b.yaml")])
    grpo = resolve(["--config", str(CONFIGS / "paper" / "grpo_codellama7b.yaml")])
    changed = {k for k, v in grpo["model"]["init_args"].items() if ppo["model"]["init_args"][k] != v}
    assert changed == {"advantage", "group_size", "kl_mode", "kl_coef", "clip_high", "loss_agg", "do_sample", "sampling_seed"}
    assert grpo["data"] == ppo["data"] and grpo["trainer"]["devices"] == ppo["trainer"]["devices"] == 8


def test_group_size_is_set_once_on_the_module():
    for path in ALL:
        raw = _load(path)
        raw = raw if isinstance(raw, dict) else {}
        data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
        assert "group_size" not in (data.get("init_args") or {}) and "data.init_args.group_size" not in raw, path


def test_experiment_files_compose_base_files_instead_of_inlining_them():
    """quickstart.yaml, ppo_quickstart.yaml and paper/*.yaml name their trainer, logger and callbacks files (the
    paper GRPO file, through the paper PPO file); the quick start resolves to the same settings as the component files."""
    for path in [BASE, PPO_BASE, *sorted((CONFIGS / "paper").glob("*.yaml"))]:
        if path.name == "grpo_codellama7b.yaml":
            continue
        raw = _load(path)
        assert isinstance(raw["config"], str) and raw["config"].endswith(".yaml"), path
        assert not isinstance(raw.get("trainer"), dict), f"{path}: trainer inlined"
        assert str(raw["trainer.logger"]).endswith(".yaml") and str(raw["trainer.callbacks"]).endswith(".yaml"), path
    cfg = resolve(["--config", str(BASE)])
    assert cfg["trainer"]["accelerator"] == "cpu" and cfg["trainer"]["max_steps"] == 1400  # base + override
    assert cfg["trainer"]["logger"]["init_args"]["save_dir"] == "${trainer.default_root_dir}"
    assert [c["class_path"].rsplit(".", 1)[1] for c in cfg["trainer"]["callbacks"]] == [
        "ModelCheckpoint", "LearningRateMonitor", "ThroughputMonitor", "HFExportCallback"]
    assert cfg["model"]["init_args"]["lr"] == 3e-3 and cfg["data"]["init_args"]["group_by_length"] is True


@pytest.mark.parametrize("path", [p for p in ALL if is_sweep(_load(p))], ids=lambda p: p.relative_to(CONFIGS).as_posix())
def test_sweep_file(path):
    sweep = _load(path)
    assert sweep.get("method") in {"grid", "random", "bayes"}
    command = [str(c) for c in sweep.get("command", [])]
    args = command[command.index("fit") + 1:]
    args = [str(CONFIGS.parent / a) if a.endswith(".yaml") else a for a in args if a != "${args}"]
    assert all(Path(a).exists() for a in args if a.endswith(".yaml")), f"{path}: command must name existing configs"
    for key, spec in sweep["parameters"].items():
        value = spec["values"][0] if "values" in spec else spec.get("value", spec.get("min"))
        args.append(f"--{key}={str(value).lower() if isinstance(value, bool) else value}")
    cli = instantiate_args(args)
    assert cli.model is not None
