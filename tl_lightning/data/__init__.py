"""Data pipeline: reader -> Trajectory -> feedback classification -> template render -> encode -> collate."""

from tl_lightning.data.batch import IGNORE_INDEX, EncodedTrajectory, TrajectoryBatch, collate_encoded
from tl_lightning.data.schema import FINISH_TOOL, FeedbackCategory, Message, Step, Tool, ToolCall, Trajectory

__all__ = [
    "FINISH_TOOL",
    "IGNORE_INDEX",
    "EncodedTrajectory",
    "FeedbackCategory",
    "Message",
    "Step",
    "Tool",
    "ToolCall",
    "Trajectory",
    "TrajectoryBatch",
    "collate_encoded",
]
