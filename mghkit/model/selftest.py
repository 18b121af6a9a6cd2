"""The bidirectional-attention self-test: change a late token, an early token's state must change.

Under causal attention the first token never sees the future, so its last-layer state is the
same for both texts (to float noise); under real bidirectional attention it moves. A model that
silently kept a causal mask (a lost config flag, a sliding window, an ignored kwarg) fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from mghkit.errors import RuntimeFailure

PROBE = "The Latin name of sodium is natrium, which is why its chemical symbol is Na."
THRESHOLD = 1e-3  # relative change of the first token's state that counts as "it saw the future"


@dataclass(frozen=True)
class SelfTestResult:
    bidirectional: bool  # the test holds
    change: float  # ||h0(a) - h0(b)|| / ||h0(a)||, first token's last-layer state
    changed_token: int  # position that was changed

    def message(self) -> str:
        verdict = "bidirectional" if self.bidirectional else "NOT bidirectional (causal)"
        return (
            f"self-test: attention is {verdict}: changing token {self.changed_token} moved the first "
            f"token's state by {self.change:.2e} (relative; threshold {THRESHOLD:.0e})"
        )


@torch.no_grad()
def bidirectional_selftest(encoder: Any, text: str = PROBE) -> SelfTestResult:
    """Run the probe through ``encoder`` (an ``Encoder``) and report whether attention is bidirectional."""
    ids, pooled = encoder.features(text)
    late = len(ids) - 2 if len(ids) > 2 else len(ids) - 1  # the last text token (before EOS)
    other = list(ids)
    other[late] = (ids[late] + 1) % len(encoder.tokenizer)
    if other[late] in encoder.tokenizer.all_special_ids:
        other[late] = (other[late] + 1) % len(encoder.tokenizer)
    batch = encoder.collate([(ids, pooled), (other, pooled)])
    hidden = encoder.forward(batch, attention=False)["hidden"].float()
    a, b = hidden[0, 0], hidden[1, 0]  # same length: no padding
    change = float((a - b).norm() / a.norm().clamp(min=1e-12))
    return SelfTestResult(bidirectional=change > THRESHOLD, change=change, changed_token=late)


def assert_bidirectional(encoder: Any) -> SelfTestResult:
    """Raise RuntimeFailure when the encoder's attention is not really bidirectional."""
    result = bidirectional_selftest(encoder)
    if not result.bidirectional:
        raise RuntimeFailure(result.message())
    return result
