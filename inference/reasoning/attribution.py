"""Which moment of the clip each reasoning step leans on: attention of the step's tokens to frames.

Not in the paper or the official code: a reading aid for annotators ("step 3 talks about what
happens around 4.5 s"). For every step, the attention that the positions predicting its tokens
give to each frame's tokens (its 182 video tokens and the audio tokens interleaved after them,
``inference.model.layout``) is averaged over heads and layers and normalised over frames. The frame
with the most attention gives the step's span: from its time to the next sampled frame's.

Cost: one prefill of the prompt (as one scoring perturbation costs) and one query over the
trace's tokens with eager attention; the per-layer weights, (1, heads, Q, prompt + Q), are
reduced to (Q, frames) as each layer finishes, so no layer's weights outlive it. The same
trunk-plus-branches query as ``inference.reasoning.scoring`` is used, so a step's rows are those its
contrastive score is computed at.

Attention is a weak explanation (it shows where the model looked, not what it used); the UI
says so. With the tiny demo model (256-token sliding window) it is as meaningless as its text.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from inference.model.layout import AV_PLACEHOLDER_ID, AVLayout
from inference.reasoning.scoring import (
    build_tree_query,
    plan_steps,
    prefill,
    query_hidden_rows,
    trace_prompt_ids,
)
from studio_trace import Trace

METHOD = "attention of the step's predicting positions to each frame (video + its audio tokens), mean over heads and layers"


@dataclass(frozen=True)
class FrameAttention:
    """Per step, the share of frame attention each sampled frame gets (sums to 1 per step)."""

    weights: list[list[float]]  # [step][frame]
    frame_times_s: list[float]
    duration_s: float

    def top_frame(self, step: int) -> int | None:
        row = self.weights[step] if step < len(self.weights) else []
        return max(range(len(row)), key=row.__getitem__) if row else None

    def span(self, step: int) -> tuple[float, float] | None:
        """(start, end) seconds of the frame step ``step`` attends to most."""
        return frame_span(self.top_frame(step), self.frame_times_s, self.duration_s)

    def to_dict(self) -> dict:
        return {
            "method": METHOD,
            "weights": [[round(w, 5) for w in row] for row in self.weights],
            "top_frames": [self.top_frame(k) for k in range(len(self.weights))],
        }


def frame_span(
    frame: int | None, frame_times_s: Sequence[float], duration_s: float
) -> tuple[float, float] | None:
    """A sampled frame's time span: from its time to the next sampled frame's (the last one: to
    the end of the clip, or half a second past its time when the duration is unknown)."""
    if frame is None or not 0 <= frame < len(frame_times_s):
        return None
    start = float(frame_times_s[frame])
    if frame + 1 < len(frame_times_s):
        end = float(frame_times_s[frame + 1])
    else:
        end = float(duration_s) if duration_s and duration_s > start else start + 0.5
    return start, end


def frame_membership(layout: AVLayout, av_start: int, total: int, device) -> torch.Tensor:
    """(total, F) one-hot: key position -> the frame whose tokens it is (zeros elsewhere)."""
    member = torch.zeros(total, layout.n_frames, device=device)
    for f, span in enumerate(layout.frames):
        member[av_start + span.video[0] : av_start + span.audio[1], f] = 1.0
    return member


@contextlib.contextmanager
def _eager_attention(llm) -> Iterator[None]:
    """Switch the LLM to eager attention (the only kind that returns its weights) and back."""
    config = llm.config
    previous = config._attn_implementation
    config._attn_implementation = "eager"
    try:
        yield
    finally:
        config._attn_implementation = previous


@torch.no_grad()
def frame_attention(loaded, trace: Trace, encoded) -> FrameAttention:
    """Attention of every step of ``trace`` to each frame of its clip (module docstring).

    ``loaded``: a LoadedModel; ``encoded``: the clip's clean EncodedMedia (av_block, layout)."""
    model, tokenizer = loaded.model, loaded.tokenizer
    layout = encoded.layout
    times = list(trace.clip.frame_times_s or [])
    if not trace.steps:
        return FrameAttention([], times, trace.clip.duration_s)
    prompt_ids = trace_prompt_ids(tokenizer, trace)
    av_start = prompt_ids.index(AV_PLACEHOLDER_ID)
    block = encoded.av_block
    prompt_len = len(prompt_ids) - 1 + block.shape[0]
    plan = plan_steps(tokenizer, [s.text for s in trace.steps])
    query = build_tree_query(plan, prompt_len)
    q = 1 + len(query.ids)
    device = model.embed_tokens.weight.device
    member = frame_membership(layout, av_start, prompt_len - 1 + q, device)  # keys: cache + query
    totals = torch.zeros(q, layout.n_frames, device=device)
    layers = 0

    def on_attention(_module, _inputs, output) -> None:
        nonlocal layers, totals
        weights = output[1]  # (1, H, Q, K) with eager attention
        if weights is None:
            return
        per_frame = weights[0].float().mean(dim=0) @ member[: weights.shape[-1]]  # (Q, F)
        totals += per_frame
        layers += 1

    decoder = model.llm.get_decoder()
    handles = [layer.self_attn.register_forward_hook(on_attention) for layer in decoder.layers]
    try:
        cache, root = prefill(model, prompt_ids, block)
        with _eager_attention(model.llm):
            query_hidden_rows(model, cache, root, query, prompt_len)
    finally:
        for handle in handles:
            handle.remove()
    if layers == 0:
        raise RuntimeError("no attention weights were returned; the LLM does not support eager attention")
    weights = []
    for rows in query.rows:
        row = totals[torch.tensor(rows, device=device)].mean(dim=0)
        share = row / row.sum().clamp_min(1e-12)
        weights.append([float(v) for v in share.cpu()])
    return FrameAttention(weights, times, trace.clip.duration_s)
