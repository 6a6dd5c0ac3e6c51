"""Sweep files read without W&B: the grid is the product of the parameter values, the macros expand as the agent's."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import pytest
import yaml

from tl_lightning.experiments.sweep import SweepError, cell_name, expand_command, grid, load_sweep, macro_args

SWEEPS = Path(__file__).resolve().parents[2] / "configs" / "sweeps"
SHIPPED = sorted(SWEEPS.glob("*.yaml"))


def _product(path: Path) -> list[dict]:
    """The grid computed independently from the raw YAML."""
    params = yaml.safe_load(path.read_text())["parameters"]
    values = {k: v["values"] if "values" in v else [v["value"]] for k, v in params.items()}
    return [dict(zip(values, combo, strict=True)) for combo in itertools.product(*values.values())]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_sweeps_parse_into_the_grid_product(path):
    cells = grid(load_sweep(path))
    expected = _product(path)
    assert len(cells) == len(expected)
    assert sorted(map(json.dumps, cells)) == sorted(map(json.dumps, expected))
    assert len({cell_name(c) for c in cells}) == len(cells)  # one folder per cell


def test_the_ablation_grids_have_the_planned_sizes():
    ablation = grid(load_sweep(SWEEPS / "tl_ablation.yaml"))
    # 4 SFT settings x 5 seeds; each cell also trains and evaluates the IRM model (--irm both): 8 settings x 5 seeds
    assert len(ablation) == 20 and {c["seed_everything"] for c in ablation} == {0, 1, 2, 3, 4}
    assert "both" in load_sweep(SWEEPS / "tl_ablation.yaml").command
    rates = grid(load_sweep(SWEEPS / "mae_error_rate.yaml"))
    assert len(rates) == 4 * 2 * 3
    assert {Path(c["data.init_args.train_path"]).parent.name for c in rates} == {
        "error_rate_0.00", "error_rate_0.17", "error_rate_0.35", "error_rate_0.50"}
    subword = grid(load_sweep(SWEEPS / "pkt_subword.yaml"))
    # PKT on/off with the sub-word tokenizer, MAE on in both, 3 seeds
    assert len(subword) == 2 * 3 and {c["data.init_args.tokenizer"] for c in subword} == {"tl-small"}
    assert {c["model.init_args.use_pkt"] for c in subword} == {False, True} and all(c["model.init_args.use_mae"] for c in subword)


def test_seeds_override_the_seed_parameter():
    sweep = load_sweep(SWEEPS / "tl_ablation.yaml")
    cells = grid(sweep, seeds=[5, 7])
    assert len(cells) == 8 and {c["seed_everything"] for c in cells} == {5, 7}
    # the seed is the first parameter, so it varies slowest: the first 4 cells are seed 5's settings
    assert [c["seed_everything"] for c in cells[:5]] == [5, 5, 5, 5, 7]


def test_seeds_need_a_seed_parameter(tmp_path):
    sweep = load_sweep(_write(tmp_path, "program: x.py\nmethod: grid\nparameters:\n  lr: {values: [1, 2]}\n"))
    with pytest.raises(SweepError, match=r"sweep.yaml: --seeds needs a seed parameter"):
        grid(sweep, seeds=[0])


def test_macros_expand_exactly_as_the_wandb_agent_writes_them():
    utils = pytest.importorskip("wandb.sdk.launch.sweeps.utils")
    params = {"model.init_args.use_mae": False, "model.init_args.use_pkt": True, "seed_everything": 2, "lr": 0.001, "name": "a b"}
    theirs = utils.create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})
    ours = macro_args(params)
    for key in ("args", "args_no_equals", "args_no_hyphens", "args_no_boolean_flags", "args_json", "args_append_hydra",
                "args_override_hydra"):
        assert ours[key] == theirs[key], key


def test_expand_command(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_CONFIG", "configs/quickstart.yaml")
    path = _write(tmp_path, """
program: tl_lightning
method: grid
parameters: {a: {values: [1]}, flag: {value: true}}
command: [python, -m, "${program}", fit, --config, "${envvar:MY_CONFIG}", "${args}", "${args_json_file}"]
""")
    cmd = expand_command(load_sweep(path), {"a": 1, "flag": True}, args_json_file="x.json", python="/py")
    assert cmd == ["/py", "-m", "tl_lightning", "fit", "--config", "configs/quickstart.yaml", "--a=1", "--flag=True", "x.json"]
    default = load_sweep(_write(tmp_path, "program: train.py\nmethod: grid\nparameters: {a: {value: 1}}\n"))
    assert expand_command(default, {"a": 1}) == ["/usr/bin/env", "python", "train.py", "--a=1"]


@pytest.mark.parametrize(("text", "problem"), [
    ("method: random\nparameters: {a: {values: [1]}}\n", "only 'method: grid' runs locally"),
    ("method: grid\nparameters: {a: {min: 0, max: 1}}\n", "neither 'values' nor 'value'"),
    ("method: grid\nparameters: {a: {values: []}}\n", "'values' must be a non-empty list"),
    ("method: grid\nparameters: {a: {distribution: uniform, min: 0, max: 1}}\n", "distribution 'uniform'"),
    ("method: grid\nparameters: {a: {parameters: {b: {value: 1}}}}\n", "nests 'parameters'"),
    ("method: grid\nparameters: {a: 3}\n", "must be a mapping"),
    ("method: grid\n", "non-empty 'parameters'"),
    ("method: grid\nparameters: {a: {value: 1}}\ncommand: ['${program}']\n", "has no 'program'"),
    ("method: [grid\n", "not valid YAML"),
])
def test_bad_sweep_files_get_one_line_naming_the_file(tmp_path, text, problem):
    with pytest.raises(SweepError) as exc:
        load_sweep(_write(tmp_path, text))
    assert str(exc.value).startswith(str(tmp_path / "sweep.yaml")) and problem in str(exc.value)
    assert "\n" not in str(exc.value)


def test_unknown_macro_is_an_error(tmp_path):
    sweep = load_sweep(_write(tmp_path, "method: grid\nparameters: {a: {value: 1}}\ncommand: [python, x.py, '${argz}']\n"))
    with pytest.raises(SweepError, match=r"unknown command macro \$\{argz\}"):
        expand_command(sweep, {"a": 1})


def test_missing_file(tmp_path):
    with pytest.raises(SweepError, match="cannot read the sweep file"):
        load_sweep(tmp_path / "nope.yaml")


def test_cell_names():
    assert cell_name({"model.init_args.use_mae": True, "seed_everything": 0}) == "use_mae_true-seed_everything_0"
    assert cell_name({"data.init_args.train_path": "runs/data/error_rate_0.35/train.jsonl"}) == "train_path_error_rate_0.35-train"
    assert os.sep not in cell_name({"x": "a/b c"})
