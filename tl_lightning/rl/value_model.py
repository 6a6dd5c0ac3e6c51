"""The PPO critic: a scalar value per response token, from its own backbone or from the actor's.

Two layouts (``critic: separate | shared``, built through :data:`CRITICS`, the one place the choice is read):

- ``separate`` (DeepSpeed-Chat, the paper): a second transformer, initialised as a copy of the
  actor's backbone (or loaded from a path), with a linear head; its own optimizer and lr.
- ``shared``: a linear head on the actor's last hidden state. One forward gives logits and values,
  at the cost of the value loss also shaping the actor's features.

Values line up with :func:`tl_lightning.generation.sequence_logprobs`: the value at response
position ``t`` is read from the hidden state that predicts token ``t`` (the state before acting).
Both critics take ``(sequences, attention_mask, response_start, hidden=None)``; ``shares_actor`` says whether
``hidden`` (the actor's last hidden states of the same forward pass) is needed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn
from transformers import PreTrainedModel

from tl_lightning.generation import position_ids_from_mask

__all__ = ["CRITICS", "CriticKind", "SharedValueHead", "ValueHead", "ValueModel", "response_slice"]

CriticKind = Literal["separate", "shared"]


def response_slice(hidden: Tensor, response_start: int) -> Tensor:
    """[B, L, ...] -> [B, T, ...]: the positions whose output predicts a response token (``start-1 .. L-2``)."""
    if response_start < 1 or response_start >= hidden.shape[1]:
        raise ValueError(f"response_start={response_start} must be in [1, {hidden.shape[1] - 1}]")
    return hidden[:, response_start - 1 : -1]


class ValueHead(nn.Module):
    """``hidden [B, T, H] -> values [B, T]``, computed in float32 whatever the backbone's dtype.

    Zero-initialised so every state starts at value 0: the first GAE targets are then the plain
    reward-to-go and no random offset has to be unlearned.
    """

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.proj = nn.Linear(hidden_size, 1, dtype=torch.float32)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.proj(hidden.to(self.proj.weight.dtype)).squeeze(-1)


def _hidden_size(model: PreTrainedModel) -> int:
    config = model.config
    size = getattr(config, "hidden_size", None) or getattr(getattr(config, "text_config", None), "hidden_size", None)
    if size is None:
        raise ValueError(f"cannot find hidden_size in the config of {type(model).__name__}")
    return int(size)


class SharedValueHead(ValueHead):
    """The ``shared`` critic: a :class:`ValueHead` on the actor's last hidden states [B, L, H]."""

    shares_actor = True

    def forward(self, sequences: Tensor, attention_mask: Tensor, response_start: int, hidden: Tensor | None = None) -> Tensor:
        """Values [B, T] from ``hidden`` [B, L, H], the actor's forward pass over ``sequences`` [B, L]."""
        if hidden is None:
            raise ValueError("a shared critic reads the actor's hidden states: pass hidden")
        return super().forward(response_slice(hidden, response_start))


class ValueModel(nn.Module):
    """A separate critic: a transformer backbone (no LM head) plus a :class:`ValueHead`."""

    shares_actor = False

    def __init__(self, backbone: nn.Module, hidden_size: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = ValueHead(hidden_size)

    @classmethod
    def from_causal_lm(cls, lm: PreTrainedModel, copy_weights: bool = True) -> ValueModel:
        """A critic whose backbone is ``lm``'s base model (deep-copied unless ``copy_weights=False``)."""
        if hasattr(lm, "get_base_model"):  # peft: its base_model is the LoRA wrapper around the whole CausalLM
            lm = lm.get_base_model()
        base = lm.base_model
        if base is lm:
            raise ValueError(f"{type(lm).__name__} has no separate base model to use as a critic backbone")
        backbone = copy.deepcopy(base) if copy_weights else base
        backbone.train(lm.training)
        return cls(backbone, _hidden_size(lm))

    def forward(self, sequences: Tensor, attention_mask: Tensor, response_start: int, hidden: Tensor | None = None) -> Tensor:
        """Values [B, T] of the response positions of ``sequences`` [B, P+T] (left-padded prompts); ``hidden`` unused."""
        out = self.backbone(
            input_ids=sequences,
            attention_mask=attention_mask,
            position_ids=position_ids_from_mask(attention_mask),
            use_cache=False,
        )
        return self.head(response_slice(out.last_hidden_state, response_start))


#: ``critic`` -> a builder from the actor.
CRITICS: dict[str, Callable[[PreTrainedModel], nn.Module]] = {
    "separate": ValueModel.from_causal_lm,
    "shared": lambda actor: SharedValueHead(_hidden_size(actor)),
}
