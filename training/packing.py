"""Several pairs on the same clip and prompt in ONE forward pass: the shared prompt + AV block is
run once and every pair hangs off it as a small tree, under a tree attention mask.

At real size the shared part is ~11k tokens (a 30 s clip) while a pair adds a prefix of a few
steps and two candidates of a few dozen tokens each; the paper's data has ~40 pairs per clip
(200k pairs from 5k videos). Running the shared part once per group instead of twice per pair
is what makes pDPO affordable. Rows of a packed group::

    [shared: prompt with the AV block] [context 1][chosen 1][rejected 1] [context 2][chosen 2]...

Nodes of the tree: the shared root; one context node per distinct context (pairs at the same
step of the same trace share it); a chosen and a rejected node under their context. A row sees
the rows before it (by index) whose node is its own node or an ancestor of it; positions
continue from the parent's last position, so every candidate sits exactly where it would in a
plain sequence ``prompt + context + candidate``. A sliding-window layer (Qwen2
``use_sliding_window``; the tiny model) also needs pos(j) > pos(i) - window, as
``inference.reasoning.scoring.tree_masks``. The result equals plain causal passes (a test checks). A
candidate's token t is predicted by the row before it on its path (for t = 0: the context's last
row, or the shared part's last row when the context is empty).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from inference.model.prompts import AV_PLACEHOLDER_ID


@dataclass(frozen=True)
class Branch:
    """One pair's token ids after the shared part."""

    context: tuple[int, ...]
    chosen: tuple[int, ...]
    rejected: tuple[int, ...]


@dataclass
class PackedGroup:
    """Layout of a packed group: ids after the shared part, node, position and prediction rows."""

    shared: int  # S rows: the prompt with its AV block
    ids: list[int] = field(default_factory=list)  # tokens after the shared part, (T - S,)
    nodes: list[int] = field(default_factory=list)  # node of each row after the shared part
    positions: list[int] = field(default_factory=list)  # position of each row after the shared part
    parents: list[int] = field(default_factory=lambda: [-1])  # node -> parent node (root: -1)
    rows: list[int] = field(default_factory=list)  # prediction rows, pair by pair: chosen then rejected
    targets: list[int] = field(default_factory=list)  # the token each prediction row predicts
    spans: list[tuple[int, int, int]] = field(
        default_factory=list
    )  # per pair: (start, n_chosen, n_rejected) in rows

    @property
    def length(self) -> int:
        return self.shared + len(self.ids)

    def node_ids(self) -> torch.Tensor:
        return torch.tensor([0] * self.shared + self.nodes, dtype=torch.long)

    def position_ids(self) -> torch.Tensor:
        """(1, T)."""
        return torch.tensor([list(range(self.shared)) + self.positions], dtype=torch.long)

    def ancestors(self) -> torch.Tensor:
        """(N, N) bool: [a, b] = node b is node a or one of its ancestors."""
        n = len(self.parents)
        out = torch.eye(n, dtype=torch.bool)
        for node in range(1, n):  # parents are created before their children
            out[node] |= out[self.parents[node]]
        return out


def pack(shared: int, branches: Sequence[Branch]) -> PackedGroup:
    """Lay out ``branches`` (one per pair) after a shared part of ``shared`` rows."""
    if shared < 1:
        raise ValueError("the shared part must hold at least one row")
    group = PackedGroup(shared)
    contexts: dict[tuple[int, ...], tuple[int, int]] = {}  # context ids -> (node, last row)

    def add(ids: Sequence[int], parent: int, start_position: int) -> tuple[int, int]:
        node = len(group.parents)
        group.parents.append(parent)
        first = group.length
        group.ids.extend(ids)
        group.nodes.extend([node] * len(ids))
        group.positions.extend(range(start_position, start_position + len(ids)))
        return node, first

    for branch in branches:
        if not branch.chosen or not branch.rejected:
            raise ValueError("a candidate without tokens cannot be scored")
        if branch.context not in contexts:
            node, first = add(branch.context, 0, shared)
            last = first + len(branch.context) - 1 if branch.context else shared - 1
            contexts[branch.context] = (node, last)
        context_node, context_last = contexts[branch.context]
        start = len(group.rows)
        for candidate in (branch.chosen, branch.rejected):
            _, first = add(candidate, context_node, shared + len(branch.context))
            group.rows.extend([context_last] + list(range(first, first + len(candidate) - 1)))
            group.targets.extend(candidate)
        group.spans.append((start, len(branch.chosen), len(branch.rejected)))
    return group


def packed_masks(config, group: PackedGroup, dtype: torch.dtype, device) -> dict[str, torch.Tensor]:
    """Additive (1, 1, T, T) masks, one per attention layer type (0 where a row may look, the
    dtype's minimum elsewhere). Built on ``device`` directly: at real size T ~ 12k, so the mask
    is ~290 MB in bf16 and should not cross the bus."""
    nodes = group.node_ids().to(device)
    pos = group.position_ids()[0].to(device)
    idx = torch.arange(group.length, device=device)
    related = group.ancestors().to(device)[nodes[:, None], nodes[None, :]]
    visible = (idx[None, :] <= idx[:, None]) & related
    masks = {}
    for layer_type in set(getattr(config, "layer_types", None) or ["full_attention"]):
        allowed = visible
        if layer_type == "sliding_attention":
            allowed = visible & (pos[None, :] > pos[:, None] - config.sliding_window)
        mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
        mask.masked_fill_(~allowed, torch.finfo(dtype).min)
        masks[layer_type] = mask[None, None]
    return masks


def shared_length(prompt_ids: Sequence[int], av_length: int) -> int:
    """Rows of the shared part: the prompt with its one placeholder replaced by the AV block."""
    placeholders = sum(1 for t in prompt_ids if t == AV_PLACEHOLDER_ID)
    if placeholders != 1:
        raise ValueError(f"a pair's prompt must hold exactly one AV placeholder, not {placeholders}")
    return len(prompt_ids) - 1 + av_length
