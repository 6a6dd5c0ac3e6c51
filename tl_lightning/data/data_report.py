"""What one split's files turned into (:class:`DataReport`): the counts, the lines of the table the datamodule
prints, and whether the split leaves anything to train on."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DataReport"]


@dataclass
class DataReport:
    """What one split's files turned into. Counts refer to kept (encoded) data unless named skipped."""

    path: str = ""
    records: int = 0
    skipped_read: int = 0
    trajectories: int = 0
    steps: int = 0
    final_answers: int = 0
    erroneous_steps: dict[str, int] = field(default_factory=dict)
    key_tokens: int = 0
    tokens: int = 0
    supervised_tokens: int = 0
    error_step_tokens: int = 0
    sequences: int = 0
    truncated: int = 0
    skipped_too_long: int = 0
    skipped_other: dict[str, int] = field(default_factory=dict)

    def trained_tokens(self, use_mae: bool) -> int:
        """The supervised tokens that get a gradient: under MAE, the tokens of erroneous steps get none."""
        return self.supervised_tokens - (self.error_step_tokens if use_mae else 0)

    def nothing_to_train(self, use_mae: bool) -> str | None:
        """Why this split leaves no token to train (or validate) on, or None. MAE on data whose every step is
        erroneous and which has no final answer masks everything: the loss would be 0 and the gradient nothing."""
        if self.trained_tokens(use_mae) > 0:
            return None
        why = (f"MAE (use_mae) masks all {self.supervised_tokens} supervised tokens: every one of the "
               f"{self.steps} steps is erroneous and there are {self.final_answers} final answers"
               if use_mae and self.supervised_tokens else "no supervised token")
        return (f"{self.path}: {why}; nothing to train on (set model.init_args.use_mae false, narrow "
                "data.init_args.error_categories, or add trajectories with successful steps or final answers)")

    @property
    def mean_key_tokens_per_step(self) -> float:
        """Key tokens on tool-call steps per kept tool-call step."""
        return self.key_tokens / self.steps if self.steps else 0.0

    def lines(self) -> list[str]:
        errors = ", ".join(f"{k} {v}" for k, v in sorted(self.erroneous_steps.items())) or "none"
        other = ", ".join(f"{k} {v}" for k, v in sorted(self.skipped_other.items())) or "none"
        return [
            f"file                {self.path}",
            f"trajectories        {self.trajectories} kept of {self.records} records "
            f"(skipped: {self.skipped_read} unreadable, {self.skipped_too_long} too long, other: {other})",
            f"steps               {self.steps} tool-call steps, {self.final_answers} final answers",
            f"erroneous steps     {sum(self.erroneous_steps.values())} ({errors})",
            f"key tokens / step   {self.mean_key_tokens_per_step:.2f}",
            f"tokens              {self.tokens} ({self.supervised_tokens} supervised, {self.error_step_tokens} of them in "
            f"erroneous steps: MAE drops those) in {self.sequences} sequences, truncated trajectories {self.truncated}",
        ]
