"""Pure tensor maths of TL-Training: the SFT objective (MAE + PKT) and PPO.

Every function here is a pure function of tensors, returns its value plus detached statistics,
and is unit-tested against hand-computed numbers (tests/test_losses*.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# ============================================================================ SFT: MAE + PKT
# (owned by the SFT work; PPO helpers must not edit this section)


# ============================================================================ PPO
# (owned by the PPO work; SFT helpers must not edit this section)
