"""Both candidates of a pair in ONE forward pass: the shared part (prompt + AV block + context)
is run once, the two candidates branch off it under a tree attention mask.

At real size the shared part is ~11k tokens (a 30 s clip) and a candidate a few dozen, so two
separate sequences would cost twice the work for nothing. Rows of the packed sequence::

    index:    0 ........ S-1 | S ..... S+n1-1 | S+n1 ...... S+n1+n2-1
    segment:  0 (shared)     | 1 (chosen)     | 2 (rejected)
    position: 0 ........ S-1 | S ..... S+n1-1 | S ......... S+n2-1      (both continue the prefix)

Row i sees row j when j <= i (by index) and j is shared or in i's own segment; a sliding-window
layer (Qwen2 ``use_sliding_window``; the tiny model) also needs pos(j) > pos(i) - window, as
``inference.scoring.tree_masks``. The result equals two plain causal passes (a test checks).
Candidate token t of a segment is predicted by the row before it: the last shared row for t = 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from inference.prompts import AV_PLACEHOLDER_ID


@dataclass(frozen=True)
class PackedLayout:
    shared: int  # S = prompt (AV block spliced in) + context
    n_chosen: int
    n_rejected: int

    @property
    def length(self) -> int:
        return self.shared + self.n_chosen + self.n_rejected

    def segments(self) -> torch.Tensor:
        """(T,) long: 0 shared, 1 chosen, 2 rejected."""
        return torch.cat(
            [
                torch.zeros(self.shared, dtype=torch.long),
                torch.ones(self.n_chosen, dtype=torch.long),
                torch.full((self.n_rejected,), 2, dtype=torch.long),
            ]
        )

    def position_ids(self) -> torch.Tensor:
        """(1, T) positions: both candidates continue from the shared part."""
        s = self.shared
        return torch.cat([torch.arange(s + self.n_chosen), torch.arange(s, s + self.n_rejected)]).unsqueeze(0)

    def prediction_rows(self) -> torch.Tensor:
        """(n1 + n2,) rows whose output predicts each chosen token, then each rejected token."""
        s, n1, n2 = self.shared, self.n_chosen, self.n_rejected
        chosen = torch.arange(s - 1, s + n1 - 1)
        rejected = torch.cat([torch.tensor([s - 1]), torch.arange(s + n1, s + n1 + n2 - 1)])
        return torch.cat([chosen, rejected[:n2]])


def packed_masks(config, layout: PackedLayout, dtype: torch.dtype, device) -> dict[str, torch.Tensor]:
    """Additive (1, 1, T, T) masks, one per attention layer type (0 where a row may look, the
    dtype's minimum elsewhere). Built on ``device`` directly: at real size T ~ 11k, so the mask
    is ~240 MB in bf16 and should not cross the bus."""
    seg = layout.segments().to(device)
    pos = layout.position_ids()[0].to(device)
    idx = torch.arange(layout.length, device=device)
    visible = (idx[None, :] <= idx[:, None]) & ((seg[None, :] == 0) | (seg[None, :] == seg[:, None]))
    masks = {}
    for layer_type in set(getattr(config, "layer_types", None) or ["full_attention"]):
        allowed = visible
        if layer_type == "sliding_attention":
            allowed = visible & (pos[None, :] > pos[:, None] - config.sliding_window)
        mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
        mask.masked_fill_(~allowed, torch.finfo(dtype).min)
        masks[layer_type] = mask[None, None]
    return masks


def shared_length(prompt_ids, context_ids, av_length: int) -> int:
    """Rows of the shared part: the prompt with its one placeholder replaced by the AV block."""
    placeholders = sum(1 for t in prompt_ids if t == AV_PLACEHOLDER_ID)
    if placeholders != 1:
        raise ValueError(f"a pair's prompt must hold exactly one AV placeholder, not {placeholders}")
    return len(prompt_ids) - 1 + av_length + len(context_ids)
