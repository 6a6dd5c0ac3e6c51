"""The run directory of a ``fit``: what a run leaves there, written so that a kill never leaves it half-done,
checked before anything counts it as finished, and locked against a second writer.

    from tl_lightning.rundir import fit_finished, hf_export_problem, lock_run_dir
    hf_export_problem("runs/quickstart/hf")      # None, or why the export is incomplete
    fit_finished("runs/quickstart")               # True only when run_status.json says so and the export verifies

- Outputs: :func:`write_json_atomic` and :func:`replace_dir` write to a temporary name beside the target and
  rename it into place, so a SIGKILL at any moment leaves the old file (or folder) or the new one, never a
  part. The fit writes its HF export that way and ``run_status.json`` after it, last.
- Checks: :func:`hf_export_problem` reads an export's ``config.json``, its weights' headers and sizes and its
  tokenizer files; a run is finished (:func:`fit_finished`) only when ``run_status.json`` says so and the
  export verifies.
- Lock: :func:`lock_run_dir` takes an exclusive ``flock`` on the run directory for the life of the fit. The
  kernel drops it when the process ends, however it ends (SIGKILL included), so a killed run never leaves a
  stale lock behind. Where ``fcntl`` does not exist (Windows) nothing is locked.

Light on purpose (no torch, no Lightning): the sweep runner and the grid cell import it to decide what to run.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "RUN_OUTPUTS",
    "RUN_STATUS",
    "RunDirBusy",
    "RunDirLock",
    "fit_finished",
    "hf_export_problem",
    "lock_run_dir",
    "read_run_status",
    "replace_dir",
    "write_json_atomic",
]

#: What a run leaves in its run directory: their presence marks the directory as used.
RUN_OUTPUTS = ("checkpoints", "hf", "metrics.csv", "config.yaml", "hparams.yaml", "run_status.json")
#: The run's status file, written last (:class:`tl_lightning.callbacks.RunStatusCallback`).
RUN_STATUS = "run_status.json"

_WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


# ---------------------------------------------------------------------------------------- atomic writes
def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` through a temporary file and a rename: a reader (or a
    process killed mid-write) sees the old file or the new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def replace_dir(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Move the finished folder ``src`` to ``dst``, replacing an earlier ``dst``.

    With no earlier ``dst`` this is one rename. With one, the old folder is first renamed aside: a kill in
    between leaves no ``dst`` at all (which no check mistakes for finished), never a mix of the two."""
    src, dst = Path(src), Path(dst)
    old = dst.with_name(f".{dst.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if dst.exists():
        os.rename(dst, old)
    os.rename(src, dst)
    shutil.rmtree(old, ignore_errors=True)
    return dst


# ---------------------------------------------------------------------------------------- checks
def _safetensors_problem(path: Path) -> str | None:
    """Why ``path`` is not a whole safetensors file: its header says how long the file must be."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return f"{path.name} is truncated (no header)"
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                return f"{path.name} is truncated (header of {n} bytes in a {size}-byte file)"
            header = json.loads(f.read(n))
    except (OSError, ValueError) as e:
        return f"{path.name} is unreadable ({e})"
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    expected = 8 + n + max(ends, default=0)
    if size != expected:
        return f"{path.name} is truncated ({size} of {expected} bytes)"
    return None


def _weights_problem(path: Path) -> str | None:
    if not path.is_file():
        return f"{path.name} is missing"
    if path.suffix == ".safetensors":
        return _safetensors_problem(path)
    return None if zipfile.is_zipfile(path) else f"{path.name} is not a whole torch archive"


def hf_export_problem(directory: str | os.PathLike) -> str | None:
    """Why ``directory`` is not a complete Hugging Face export (model and tokenizer); None when it is.

    Checked without loading anything: ``config.json`` parses, every weight file is whole (a safetensors
    header gives the file's exact length; sharded exports: every shard of the index), and a tokenizer file
    is there."""
    d = Path(directory)
    if not d.is_dir():
        return f"{d} does not exist"
    try:
        config = json.loads((d / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return f"{d}: no readable config.json ({type(e).__name__})"
    if not isinstance(config, dict):
        return f"{d}: config.json is not a JSON object"
    index = next((d / name for name in _WEIGHT_INDEXES if (d / name).is_file()), None)
    if index is not None:
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError) as e:
            return f"{d}: {index.name} is unreadable ({type(e).__name__})"
    else:
        shards = [next((name for name in _WEIGHT_FILES if (d / name).exists()), _WEIGHT_FILES[0])]
    for shard in shards:
        problem = _weights_problem(d / shard)
        if problem:
            return f"{d}: {problem}"
    if not any((d / name).is_file() for name in _TOKENIZER_FILES):
        return f"{d}: no tokenizer ({' or '.join(_TOKENIZER_FILES)})"
    return None


def read_run_status(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """``<run_dir>/run_status.json`` as a dict; None when there is none. Raises ``ValueError`` (naming the
    file) when it is not a JSON object."""
    path = Path(run_dir) / RUN_STATUS
    if not path.is_file():
        return None
    try:
        status = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(status, dict):
        raise ValueError(f"{path}: not a JSON object")
    return status


def fit_finished(run_dir: str | os.PathLike, hf_dir: str | os.PathLike | None = None) -> bool:
    """Whether the fit in ``run_dir`` is done: its status says it completed (or that its time limit, which a
    resume cannot extend, stopped it) and its export (``hf_dir``, default ``<run_dir>/hf``) verifies."""
    status = read_run_status(run_dir)
    if not status or not (status.get("completed") or status.get("stopped_by") == "max_time"):
        return False
    return hf_export_problem(hf_dir if hf_dir is not None else Path(run_dir) / "hf") is None


# ---------------------------------------------------------------------------------------- lock
class RunDirBusy(RuntimeError):
    """Another live process holds the run directory."""


class RunDirLock:
    """An exclusive, non-blocking ``flock`` on the run directory itself, for this process.

    The directory is locked, not a file in it: nothing is left behind, and Lightning's loggers still find a
    fresh run directory empty. Released by :meth:`release` or, whatever happens, when the process ends.
    Where the file system cannot lock a directory, nothing is locked and a warning says so."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)
        self._fd: int | None = None

    def acquire(self) -> RunDirLock:
        if fcntl is None or self._fd is not None:
            return self
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.run_dir, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunDirBusy(
                f"run directory {self.run_dir} is in use by another run (a live process holds its lock); wait for "
                "it to end or choose another --trainer.default_root_dir"
            ) from None
        except OSError as e:  # e.g. a network file system without flock on directories
            os.close(fd)
            warnings.warn(f"cannot lock run directory {self.run_dir} ({e}); a second run into it will not be refused",
                          stacklevel=2)
            return self
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunDirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_run_dir(run_dir: str | os.PathLike) -> RunDirLock:
    """Lock ``run_dir`` for this process; raises :class:`RunDirBusy` (one line) when another run holds it."""
    return RunDirLock(run_dir).acquire()
