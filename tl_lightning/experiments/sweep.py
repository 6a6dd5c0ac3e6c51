"""W&B sweep files read without W&B: the grid of a ``method: grid`` sweep and the command of each cell.

    from tl_lightning.experiments.sweep import load_sweep, grid, expand_command
    sweep = load_sweep("configs/sweeps/tl_ablation.yaml")
    for params in grid(sweep, seeds=[0, 1, 2]):
        print(cell_name(params), expand_command(sweep, params))

The file is the one ``wandb sweep FILE`` accepts: ``program``, ``method``, ``parameters`` (each with
``values: [...]`` or ``value: x``) and ``command`` (W&B's default when absent:
``${env} ${interpreter} ${program} ${args}``). The cells are the Cartesian product of the parameters'
values, the set W&B's grid search makes (a constant is a one-value list). The command's macros expand
as the W&B agent expands them (``wandb/sdk/launch/sweeps/utils.py``, ``wandb_agent.py``): ``${args}`` is
``--name=value`` per parameter with Python's ``str(value)`` (so ``True``/``False``), ``${args_no_hyphens}``
``name=value``, ``${args_no_equals}`` ``--name value``, ``${args_no_boolean_flags}`` drops false booleans
and writes true ones as ``--name``, ``${args_json}`` one JSON object, ``${args_json_file}`` the path of a
file holding it, ``${env}`` ``/usr/bin/env``, ``${interpreter}`` ``python``, ``${program}`` the program,
and ``${envvar:NAME}`` inside a token the environment variable (the name itself when unset).
Unlike the agent, an unknown ``${...}`` macro is an error rather than silently dropped.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "SEED_PARAMETERS",
    "Sweep",
    "SweepError",
    "cell_name",
    "expand_command",
    "grid",
    "load_sweep",
    "macro_args",
    "seed_parameter",
]

#: Parameter names that ``--seeds`` overrides (the first one the sweep has).
SEED_PARAMETERS = ("seed_everything", "seed")
#: W&B's command when the file names none.
DEFAULT_COMMAND = ("${env}", "${interpreter}", "${program}", "${args}")
_ENVVAR = re.compile(r"\$\{envvar:([A-Z0-9_]*)\}")
_GRID_DISTRIBUTIONS = ("categorical", "constant")


class SweepError(ValueError):
    """A sweep file that cannot run as a local grid; the message names the file and the problem."""


@dataclass(frozen=True)
class Sweep:
    """A parsed sweep file.

    ``parameters`` maps each name to its values in file order (a ``value:`` constant is a one-value
    list); ``command`` is the raw token list, macros unexpanded.
    """

    path: Path
    program: str | None
    method: str
    parameters: dict[str, list[Any]]
    command: list[str]


def load_sweep(path: str | os.PathLike) -> Sweep:
    """Read and check a sweep file; raises :class:`SweepError` (one line: file and problem)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise SweepError(f"{path}: cannot read the sweep file ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        raise SweepError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("parameters"), dict) or not raw["parameters"]:
        raise SweepError(f"{path}: a sweep file needs a non-empty 'parameters' mapping")
    method = raw.get("method")
    if method != "grid":
        # random and bayes draw their runs on the W&B server; only a grid has a fixed list of cells.
        raise SweepError(f"{path}: method is {method!r}; only 'method: grid' runs locally (random/bayes need the W&B server)")
    params = {str(name): _values(path, str(name), spec) for name, spec in raw["parameters"].items()}
    command = raw.get("command", list(DEFAULT_COMMAND))
    if not isinstance(command, list) or not command:
        raise SweepError(f"{path}: 'command' must be a non-empty list of tokens")
    program = raw.get("program")
    if any("${program}" == str(c) for c in command) and not program:
        raise SweepError(f"{path}: the command uses ${{program}} but the file has no 'program'")
    return Sweep(path, None if program is None else str(program), method, params, [str(c) for c in command])


def _values(path: Path, name: str, spec: Any) -> list[Any]:
    if not isinstance(spec, dict):
        raise SweepError(f"{path}: parameter {name!r} must be a mapping with 'values' or 'value', got {spec!r}")
    if "parameters" in spec:
        raise SweepError(f"{path}: parameter {name!r} nests 'parameters', which the local grid does not support")
    if spec.get("distribution", "categorical" if "values" in spec else "constant") not in _GRID_DISTRIBUTIONS:
        raise SweepError(f"{path}: parameter {name!r} has distribution {spec['distribution']!r}; a grid needs 'values' or 'value'")
    if "values" in spec:
        values = spec["values"]
        if not isinstance(values, list) or not values:
            raise SweepError(f"{path}: parameter {name!r}: 'values' must be a non-empty list")
        return list(values)
    if "value" in spec:
        return [spec["value"]]
    raise SweepError(f"{path}: parameter {name!r} has neither 'values' nor 'value' (a grid cannot sample min/max ranges)")


def seed_parameter(sweep: Sweep) -> str:
    """The name of the sweep's seed parameter (``seed_everything`` or ``seed``)."""
    for name in SEED_PARAMETERS:
        if name in sweep.parameters:
            return name
    raise SweepError(f"{sweep.path}: --seeds needs a seed parameter ({' or '.join(SEED_PARAMETERS)}); the file has {sorted(sweep.parameters)}")


def grid(sweep: Sweep, seeds: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Every cell of the grid as ``{parameter: value}``, in file order with the last parameter varying
    fastest; ``seeds`` replaces the values of the seed parameter."""
    params = dict(sweep.parameters)
    if seeds is not None:
        if not seeds:
            raise SweepError(f"{sweep.path}: --seeds needs at least one seed")
        params[seed_parameter(sweep)] = list(dict.fromkeys(seeds))
    names = list(params)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*params.values())]


def macro_args(params: dict[str, Any]) -> dict[str, list[str]]:
    """The argument macros of one cell, token lists exactly as the W&B agent writes them."""
    flags = [f"--{k}={v}" for k, v in params.items()]
    return {
        "args": flags,
        "args_no_equals": [t for k, v in params.items() for t in (f"--{k}", str(v))],
        "args_no_hyphens": [f"{k}={v}" for k, v in params.items()],
        "args_no_boolean_flags": [f"--{k}" if v is True else f"--{k}={v}" for k, v in params.items() if v is not False],
        "args_json": [json.dumps(params)],
        "args_append_hydra": [f"+{k}={v}" for k, v in params.items()],
        "args_override_hydra": [f"++{k}={v}" for k, v in params.items()],
    }


def expand_command(sweep: Sweep, params: dict[str, Any], args_json_file: str | os.PathLike | None = None,
                   python: str = "python") -> list[str]:
    """The command of one cell: macros replaced as the W&B agent replaces them.

    ``python`` replaces the ``python``/``python3`` executable token and ``${interpreter}`` (the local
    runner passes ``sys.executable``, so cells run in its environment). ``args_json_file`` is where
    ``${args_json_file}`` points; the caller writes the file (:func:`macro_args` ``["args_json"]``).
    """
    variables = {**macro_args(params), "env": ["/usr/bin/env"], "interpreter": [python],
                 "program": [sweep.program or ""]}
    if args_json_file is not None:
        variables["args_json_file"] = [os.fspath(args_json_file)]
    out: list[str] = []
    for token in sweep.command:
        token = _ENVVAR.sub(lambda m: os.environ.get(m.group(1), m.group(1)), token)
        if token.startswith("${") and token.endswith("}"):
            name = token[2:-1]
            if name not in variables:
                known = ", ".join(sorted({*variables, "args_json_file"}))
                raise SweepError(f"{sweep.path}: unknown command macro {token} (known: {known})")
            out += variables[name]
        else:
            executable = not out or out == ["/usr/bin/env"]  # only the program token, never an argument
            out.append(python if executable and token in ("python", "python3") else token)
    return out


def _slug(value: Any) -> str:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if "/" in text:  # a path: its last two parts say what it is (e.g. error_rate_0.35-train)
        parts = Path(text).with_suffix("").parts
        text = "-".join(parts[-2:])
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "_"


def cell_name(params: dict[str, Any]) -> str:
    """A folder name for a cell from its parameters, e.g. ``use_mae_false-use_pkt_true-seed_everything_0``
    (the last dotted part of each name, then the value; path values keep their last two parts)."""
    return "-".join(f"{name.rsplit('.', 1)[-1]}_{_slug(value)}" for name, value in params.items())
