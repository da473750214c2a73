"""Both candidates of a pair in one pass give the log-probs of two plain causal passes."""

from __future__ import annotations

import torch

from inference.scoring import MARKER
from training.packing import PackedLayout, packed_masks


def test_layout_rows_positions_and_visibility():
    layout = PackedLayout(shared=3, n_chosen=2, n_rejected=3)
    assert layout.segments().tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
    assert layout.position_ids().tolist() == [[0, 1, 2, 3, 4, 3, 4, 5]]
    # chosen tokens (rows 3, 4) are predicted by rows 2, 3; rejected (rows 5..7) by 2, 5, 6
    assert layout.prediction_rows().tolist() == [2, 3, 2, 5, 6]

    class Config:
        layer_types = ["full_attention"]

    mask = packed_masks(Config, layout, torch.float32, "cpu")["full_attention"][0, 0]
    visible = (mask == 0).int().tolist()
    assert visible == [
        [1, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0, 0, 0],
        [1, 1, 1, 1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0, 1, 0, 0],
        [1, 1, 1, 0, 0, 1, 1, 0],
        [1, 1, 1, 0, 0, 1, 1, 1],
    ]


def test_sliding_window_counts_positions_not_rows():
    class Config:
        layer_types = ["sliding_attention"]
        sliding_window = 2

    layout = PackedLayout(shared=2, n_chosen=2, n_rejected=2)  # positions 0 1 2 3 2 3
    mask = packed_masks(Config, layout, torch.float32, "cpu")["sliding_attention"][0, 0]
    visible = (mask == 0).int().tolist()
    assert visible[4] == [0, 1, 0, 0, 1, 0]  # rejected row at position 2 sees position 1 and itself
    assert visible[5] == [0, 0, 0, 0, 1, 1]


def plain_logps(model, block, prompt_ids, context_ids, candidate_ids) -> float:
    """The straightforward way: prompt + context + candidate as one causal sequence."""
    ids = [*prompt_ids, *context_ids, *candidate_ids]
    n = len(candidate_ids)
    with torch.no_grad():
        embeds = model.embed_prompt(ids, [block])
        logits = model.llm(inputs_embeds=embeds, logits_to_keep=n + 1).logits[0, :-1].float()
    logp = torch.log_softmax(logits, dim=-1)
    return float(logp.gather(-1, torch.tensor(candidate_ids)[:, None]).sum())


def test_packed_pass_equals_two_plain_passes(tiny_model, toy_clips):
    from inference.prompts import build_prompt
    from training.data import PairExample
    from training.features import FeatureCache
    from training.policy import PairScorer
    from training.trainer import candidate_logps, pair_inputs

    model, tok = tiny_model.model, tiny_model.tokenizer
    clip = toy_clips[0]
    prompt = build_prompt(tok, "reasoning", clip["question"], clip["options"])
    context = tuple(tok("I look at the clip." + MARKER).input_ids)
    chosen = tuple(tok("I see a red circle." + MARKER).input_ids)
    rejected = tuple(tok("I hear a loud and long beep here." + MARKER).input_ids)
    pair = PairExample(0, "step", clip["sha256"], clip["path"], prompt.ids, context, chosen, rejected, 1.0)
    features = FeatureCache(model)
    block = features.get(clip["sha256"], clip["path"])
    # longer than the tiny model's 256-token sliding window, so the window is exercised
    assert block.shape[0] + len(prompt.ids) > 256
    with torch.no_grad():
        got = candidate_logps(PairScorer(model.llm, logits_chunk=5), pair_inputs(model, features, pair))
    want = [plain_logps(model, block, prompt.ids, context, c) for c in (chosen, rejected)]
    torch.testing.assert_close(
        torch.stack(got).double(), torch.tensor(want, dtype=torch.float64), atol=2e-4, rtol=1e-5
    )
