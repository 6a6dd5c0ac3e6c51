"""What counts as finished in a grid, checked on disk: a test's ``report.json`` (:func:`report_problem`) and a whole
cell (:func:`cell_problem`: its ``cell.json`` and every fit and report it names). A fit's own check is
:func:`tl_lightning.rundir.fit_finished`; :func:`tl_lightning.experiments.cell.fit_resume_args` says how to go on.
"""

from __future__ import annotations

import json
from pathlib import Path

from tl_lightning.rundir import fit_finished

__all__ = ["cell_problem", "report_problem"]


def report_problem(path: Path) -> str | None:
    """Why ``path`` is not a usable ``report.json`` (missing, unreadable, not a report); None when it is."""
    if not path.is_file():
        return f"{path} does not exist"
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return f"{path}: cannot read ({e})"
    if not isinstance(report, dict) or "kind" not in report:
        return f"{path}: not a report"
    return None


def cell_problem(cell_dir: Path) -> str | None:
    """Why the cell in ``cell_dir`` is not finished: no readable ``cell.json``, or an output it names that does
    not verify (a stage's fit, an evaluation's report). None when everything checks."""
    try:
        record = json.loads((cell_dir / "cell.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return f"{cell_dir / 'cell.json'}: cannot read ({type(e).__name__})"
    if not isinstance(record, dict):
        return f"{cell_dir / 'cell.json'}: not a JSON object"
    for stage in record.get("stages") or {}:
        if not fit_finished(cell_dir / stage):
            return f"{cell_dir / stage}: the fit is not finished (no completed run_status.json with a whole hf/ export)"
    for evaluation in record.get("evaluations") or []:
        for rel in (evaluation.get("reports") or {}).values():
            problem = report_problem(cell_dir / rel)
            if problem:
                return problem
    return None
