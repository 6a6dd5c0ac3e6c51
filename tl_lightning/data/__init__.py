"""Data pipeline: reader -> Trajectory -> feedback classification -> template render -> encode -> collate."""

from typing import Any

from tl_lightning.data.cases import EvalCase, MultiTurnTask
from tl_lightning.data.errors import ReadReport, TrajectoryFormatError
from tl_lightning.data.feedback import FeedbackClassifier, classify_feedback, step_category
from tl_lightning.data.readers import ReadResult, read_trajectories, write_openai_jsonl
from tl_lightning.data.schema import FINISH_TOOL, FeedbackCategory, Message, Step, Tool, ToolCall, Trajectory

__all__ = [
    "FINISH_TOOL",
    "IGNORE_INDEX",
    "EncodedTrajectory",
    "EvalCase",
    "FeedbackCategory",
    "FeedbackClassifier",
    "Message",
    "MultiTurnTask",
    "ReadReport",
    "ReadResult",
    "Step",
    "Tool",
    "ToolCall",
    "Trajectory",
    "TrajectoryBatch",
    "TrajectoryFormatError",
    "classify_feedback",
    "collate_encoded",
    "encode_trajectory",
    "get_template",
    "read_trajectories",
    "step_category",
    "write_openai_jsonl",
]

# Imported on first use: batches, encoding and templates import torch or tokenizer machinery (seconds),
# which readers, the sandbox and the synthetic generator never need.
_LAZY = {
    "encode_trajectory": "tl_lightning.data.encode",
    "get_template": "tl_lightning.data.templates",
    "IGNORE_INDEX": "tl_lightning.data.batch",
    "EncodedTrajectory": "tl_lightning.data.batch",
    "TrajectoryBatch": "tl_lightning.data.batch",
    "collate_encoded": "tl_lightning.data.batch",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
