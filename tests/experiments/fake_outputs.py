"""What a finished fit leaves, faked for the tests of the grid: a whole HF export (``tl_lightning.rundir``
checks config.json, the weights' length against their header, and a tokenizer file)."""

from __future__ import annotations

import inspect
from pathlib import Path


def write_export(directory: Path) -> None:
    import json
    import struct

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text("{}")
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    (directory / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bytes(4))
    (directory / "tokenizer.json").write_text("{}")


#: ``write_export`` as source text, for the fake programs the grid runs as subprocesses.
EXPORT_SOURCE = inspect.getsource(write_export)
