"""Several pairs of one clip in one packed pass give the log-probs of plain causal passes."""

from __future__ import annotations

import torch

from inference.reasoning.scoring import MARKER
from training.packing import Branch, pack, packed_masks


class FullAttention:
    layer_types = ["full_attention"]


def visible(group, config=FullAttention, kind="full_attention") -> list[list[int]]:
    return (packed_masks(config, group, torch.float32, "cpu")[kind][0, 0] == 0).int().tolist()


def test_one_pair_rows_positions_and_visibility():
    group = pack(2, [Branch(context=(7,), chosen=(10, 11), rejected=(20, 21, 22))])
    assert group.ids == [7, 10, 11, 20, 21, 22]
    assert group.position_ids().tolist() == [[0, 1, 2, 3, 4, 3, 4, 5]]
    # chosen (rows 3, 4) predicted by rows 2, 3; rejected (rows 5..7) by rows 2, 5, 6
    assert group.rows == [2, 3, 2, 5, 6] and group.targets == [10, 11, 20, 21, 22]
    assert group.spans == [(0, 2, 3)]
    assert visible(group) == [
        [1, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0, 0, 0],
        [1, 1, 1, 1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0, 1, 0, 0],
        [1, 1, 1, 0, 0, 1, 1, 0],
        [1, 1, 1, 0, 0, 1, 1, 1],
    ]


def test_pairs_share_the_root_and_equal_contexts():
    group = pack(
        1,
        [
            Branch(context=(5,), chosen=(1,), rejected=(2,)),
            Branch(context=(5,), chosen=(3,), rejected=(1,)),  # same step: the context is shared
            Branch(context=(), chosen=(4,), rejected=(6,)),  # a full path: straight off the root
        ],
    )
    assert group.ids == [5, 1, 2, 3, 1, 4, 6]
    assert group.parents == [-1, 0, 1, 1, 1, 1, 0, 6, 6]
    assert group.position_ids().tolist() == [[0, 1, 2, 2, 2, 2, 1, 1]]
    assert group.rows == [1, 1, 1, 1, 0, 0] and group.targets == [1, 2, 3, 1, 4, 6]
    assert group.spans == [(0, 1, 1), (2, 1, 1), (4, 1, 1)]
    assert visible(group) == [
        [1, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0, 0],
        [1, 1, 0, 1, 0, 0, 0, 0],
        [1, 1, 0, 0, 1, 0, 0, 0],
        [1, 1, 0, 0, 0, 1, 0, 0],
        [1, 0, 0, 0, 0, 0, 1, 0],
        [1, 0, 0, 0, 0, 0, 0, 1],
    ]


def test_sliding_window_counts_positions_not_rows():
    class Sliding:
        layer_types = ["sliding_attention"]
        sliding_window = 2

    group = pack(2, [Branch((), (1, 2), (3, 4))])  # positions 0 1 | 2 3 | 2 3
    rows = visible(group, Sliding, "sliding_attention")
    assert rows[4] == [0, 1, 0, 0, 1, 0]  # rejected row at position 2 sees position 1 and itself
    assert rows[5] == [0, 0, 0, 0, 1, 1]


def plain_logps(model, block, prompt_ids, context_ids, candidate_ids) -> float:
    """The straightforward way: prompt + context + candidate as one causal sequence."""
    ids = [*prompt_ids, *context_ids, *candidate_ids]
    n = len(candidate_ids)
    with torch.no_grad():
        embeds = model.embed_prompt(ids, [block])
        logits = model.llm(inputs_embeds=embeds, logits_to_keep=n + 1).logits[0, :-1].float()
    logp = torch.log_softmax(logits, dim=-1)
    return float(logp.gather(-1, torch.tensor(candidate_ids)[:, None]).sum())


def test_packed_group_equals_plain_passes(tiny_model, toy_clips):
    from inference.model.prompts import build_prompt
    from training.data import PairExample
    from training.features import FeatureCache
    from training.policy import PairScorer
    from training.trainer import candidate_logps, group_inputs

    model, tok = tiny_model.model, tiny_model.tokenizer
    clip = toy_clips[0]
    prompt = build_prompt(tok, "reasoning", clip["question"], clip["options"])

    def ids(text: str) -> tuple[int, ...]:
        return tuple(tok(text).input_ids)

    look = ids("I look at the clip." + MARKER)
    pairs = [
        PairExample(0, "step", clip["sha256"], clip["path"], prompt.ids, look,
                    ids("I see a red circle." + MARKER), ids("I hear a loud and long beep here." + MARKER), 1.0),
        PairExample(1, "step", clip["sha256"], clip["path"], prompt.ids, look,
                    ids("Nothing moves." + MARKER), ids("I see a red circle." + MARKER), 0.7),
        PairExample(2, "full_path", clip["sha256"], clip["path"], prompt.ids, (),
                    ids(MARKER.join(["A circle.", "The answer is A."])), ids(MARKER.join(["A beep.", "So B."])), 1.0),
    ]  # fmt: skip
    features = FeatureCache(model)
    block = features.get(clip["sha256"], clip["path"])
    # longer than the tiny model's 256-token sliding window, so the window is exercised
    assert block.shape[0] + len(prompt.ids) > 256
    with torch.no_grad():
        got = candidate_logps(PairScorer(model.llm, logits_chunk=5), group_inputs(model, features, pairs))
    want = [
        [plain_logps(model, block, prompt.ids, p.context_ids, c) for c in (p.chosen_ids, p.rejected_ids)]
        for p in pairs
    ]
    torch.testing.assert_close(got.double(), torch.tensor(want, dtype=torch.float64), atol=2e-4, rtol=1e-5)
