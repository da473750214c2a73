"""Contrastive step scores: how much each reasoning step's tokens change when the clip is perturbed.

For step s_k with tokens y_1..y_n, clean audio-visual input H and perturbed input H~ (paper,
official ``contrast_probs`` in ``llava/train/llava_trainer.py:1540-1557``)::

    d(s_k) = 1/n * sum_i KL( P(. | prompt, prev_k, y_<i, H) || P(. | prompt, prev_k, y_<i, H~) )

Official step convention (``llava_trainer.py:1659-1673``, quirk 11 of
``shared/reference/official_tiny/README.md``): the context of step k is
``tok(prev_k)`` with ``prev_k = "".join(s_i + "<end_of_step>\\n" for i < k)`` tokenized as ONE
string, and the step is ``tok(s_k)``, its text WITHOUT the marker tokenized on its own (so a
final "." is token 13, where inside the trace it would be ".<" = 15757). We score every step;
the official selection loop also drops steps of two words or fewer (our ``official_loop_texts``
reproduces that filter for the golden test only).

How we compute it (the official code runs two full passes over prompt + prefix + step for
EVERY step, each re-encoding the clip):

1. The prompt is prefilled once per input (clean, and each perturbation), all but its last
   token, into a KV cache. Only the perturbed modality's encoder runs again: the clean tokens of
   the other modality are spliced back from the clean AV block.
2. One query holds, after that cache: the prompt's last token (the root), the trunk (the whole
   trace as one string, steps joined by markers), and a branch for each step whose official
   context is not a prefix of the trunk. Because Qwen2's pre-tokenizer ends a pre-token after
   ``">\\n"``, ``tok(prev_k)`` is a prefix of the trunk and ``tok(s_k)[:-1]`` almost always
   continues it (only the last token differs, and the last token is never an input), so in
   practice there are no branches and the query is plain causal. When a step's tokens diverge
   earlier (e.g. text ending "!:" tokenizes "!:" alone but "!", ":<" before a marker) the branch
   attends to the prompt, to the trunk up to the shared prefix and causally to itself, with
   position ids continuing from that prefix: a tree attention mask, exact.
3. Hidden states are kept only at the rows that predict step tokens; logits are made from them
   in chunks of rows, in float32, and reduced to per-token KL at once. No [sequence x vocabulary]
   tensor over the prompt is ever built.

``official_step_kls`` is the straightforward per-step reference (two full passes per step);
the tests check that both agree within 1e-5 on the tiny model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from inference.errors import UserError
from inference.reasoning.perturb import NOISE_STEP, AVTensors, get_perturbation, perturb
from studio_trace import STEP_SUFFIX, Trace

MARKER = STEP_SUFFIX  # what follows every step but the last in the official prev_strs
CONVENTION = "official: step text without marker, tokenized alone; previous steps joined with markers"


class ScoringError(UserError):
    """A trace cannot be scored as asked."""


@dataclass(frozen=True)
class ScoringSettings:
    perturbations: tuple[str, ...] = ("noise",)  # the first one gives Step.score (the paper's: noise)
    top_t: int = 3  # steps flagged as most suspicious: T = 3 was best in the paper (Fig. 5)
    seed: int = 0  # seeds every perturbation's generator: same trace + seed -> same scores
    logits_chunk: int = 128  # rows per lm_head call: 128 x 151646 float32 = 78 MB at a time
    share_trunk: bool = True  # False: every step its own branch (exact too; tests the tree mask)


# ---- the official step convention ----------------------------------------------------------------


def prev_text(step_texts: Sequence[str], k: int) -> str:
    """``prev_k``: the steps before k, each followed by ``"<end_of_step>\\n"``, as one string."""
    return "".join(text + MARKER for text in step_texts[:k])


def official_loop_texts(step_texts: Sequence[str]) -> list[str]:
    """The steps the official selection loop keeps (``llava_trainer.py:1659-1661``): more than
    two whitespace-separated words. Those dropped vanish from later contexts too."""
    return [t for t in step_texts if len(t.split()) > 2]


def _tok(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text).input_ids) if text else []


@dataclass(frozen=True)
class StepPlan:
    """Where step k's predictions come from. The official context of the step is
    ``tok(prev_k) + targets[:-1]``: its first ``shared`` tokens are the trunk's, the rest are
    the step's own branch (usually empty)."""

    index: int
    targets: list[int]  # tok(s_k): the tokens whose next-token distributions are compared
    prefix_len: int  # len(tok(prev_k))
    shared: int
    own: list[int]

    def context_positions(self) -> list[int]:
        """Positions in the step's context (-1 = the prompt's last token) whose next-token
        distribution predicts each target."""
        return [self.prefix_len - 1 + j for j in range(len(self.targets))]


@dataclass(frozen=True)
class ScoringPlan:
    trunk: list[int]
    steps: list[StepPlan] = field(default_factory=list)

    @property
    def branch_tokens(self) -> int:
        return sum(len(s.own) for s in self.steps)


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def plan_steps(tokenizer, step_texts: Sequence[str], share_trunk: bool = True) -> ScoringPlan:
    """Tokenize a trace's steps the official way and lay them out as a trunk plus branches."""
    texts = list(step_texts)
    trunk = _tok(tokenizer, prev_text(texts, len(texts) - 1) + texts[-1]) if texts and share_trunk else []
    steps = []
    for k, text in enumerate(texts):
        prefix = _tok(tokenizer, prev_text(texts, k))
        targets = _tok(tokenizer, text)
        context = prefix + targets[:-1]
        shared = _common_prefix(context, trunk)
        steps.append(StepPlan(k, targets, len(prefix), shared, context[shared:]))
    return ScoringPlan(trunk, steps)


# ---- one query for every step: trunk + branches under a tree mask --------------------------------


@dataclass
class TreeQuery:
    ids: list[int]  # query tokens after the root (the root is the prompt's last embedding)
    position_ids: torch.Tensor  # (1, 1 + len(ids)) absolute positions
    allowed: torch.Tensor | None  # (Q, Q) bool, None when the query is plain causal
    rows: list[list[int]]  # per step: query rows whose hidden state predicts each target


def build_tree_query(plan: ScoringPlan, prompt_len: int) -> TreeQuery:
    """Query rows: 0 = the prompt's last token (position prompt_len - 1), 1.. = trunk, then each
    step's own branch. Row r of a branch at offset j of step k sits at position
    prompt_len + shared_k + j and sees the root, trunk[:shared_k] and its branch up to itself."""
    trunk_len = len(plan.trunk)
    ids = list(plan.trunk)
    positions = list(range(prompt_len - 1, prompt_len + trunk_len))
    branch_start: dict[int, int] = {}
    for step in plan.steps:
        if step.own:
            branch_start[step.index] = 1 + len(ids)
            ids.extend(step.own)
            positions.extend(range(prompt_len + step.shared, prompt_len + step.shared + len(step.own)))
    q = 1 + len(ids)

    allowed = None
    if branch_start:
        allowed = torch.zeros(q, q, dtype=torch.bool)
        allowed[: 1 + trunk_len, : 1 + trunk_len] = torch.ones(1 + trunk_len, 1 + trunk_len).tril().bool()
        for step in plan.steps:
            if step.own:
                start, n = branch_start[step.index], len(step.own)
                allowed[start : start + n, : 1 + step.shared] = True
                allowed[start : start + n, start : start + n] = torch.ones(n, n).tril().bool()

    rows = []
    for step in plan.steps:
        step_rows = []
        for c in step.context_positions():
            if c < step.shared:
                step_rows.append(1 + c)  # the root (c = -1) or a trunk row
            else:
                step_rows.append(branch_start[step.index] + c - step.shared)
        rows.append(step_rows)
    return TreeQuery(ids, torch.tensor([positions]), allowed, rows)


def tree_masks(config, query: TreeQuery, past: int, dtype: torch.dtype, device) -> dict[str, torch.Tensor]:
    """Additive (1,1,q,past+q) masks, one per attention layer type, for a query after ``past``
    cached positions: 0 where allowed, the dtype's minimum elsewhere. A 4D mask reaches eager
    and sdpa attention as it is (masking_utils returns it untouched), so a sliding-window layer
    (Qwen2 ``use_sliding_window``) needs its window applied here, by position: a key at
    position p' is visible from position p when p' > p - window, as transformers' overlay."""
    q = query.allowed.shape[0]
    allowed = torch.cat([torch.ones(q, past, dtype=torch.bool), query.allowed], dim=1)
    q_pos = query.position_ids[0]
    kv_pos = torch.cat([torch.arange(past), q_pos])
    masks = {}
    for layer_type in set(getattr(config, "layer_types", None) or ["full_attention"]):
        visible = allowed
        if layer_type == "sliding_attention":
            visible = allowed & (kv_pos[None, :] > q_pos[:, None] - config.sliding_window)
        mask = torch.zeros(visible.shape, dtype=dtype)
        mask.masked_fill_(~visible, torch.finfo(dtype).min)
        masks[layer_type] = mask[None, None].to(device)
    return masks


def _decoder_and_head(llm):
    """The Qwen2 body (returns normed hidden states) and the lm_head; works through peft."""
    return llm.get_decoder(), llm.get_output_embeddings()


@torch.no_grad()
def prefill(model, prompt_ids: Sequence[int], av_block: torch.Tensor):
    """Feed all but the last prompt position into a fresh DynamicCache.

    Returns (cache, last_embedding (1,1,D)): the last one is the root of the scoring query, so
    its hidden state (which predicts the first token of step 0) comes from the same pass."""
    from transformers import DynamicCache

    embeds = model.embed_prompt(list(prompt_ids), [av_block])  # (1,P,D)
    decoder, _ = _decoder_and_head(model.llm)
    cache = DynamicCache()
    decoder(inputs_embeds=embeds[:, :-1], cache=cache, use_cache=True)
    return cache, embeds[:, -1:]


@torch.no_grad()
def query_hidden_rows(
    model, cache, root_embed: torch.Tensor, query: TreeQuery, prompt_len: int
) -> torch.Tensor:
    """Run the tree query after ``cache`` (which holds prompt_len - 1 positions) and return the
    final hidden states at every step's prediction rows, concatenated (R, D). The cache is
    cropped back afterwards, so the same prefill serves again."""
    decoder, _ = _decoder_and_head(model.llm)
    embeds = root_embed
    if query.ids:
        embeds = torch.cat([root_embed, model.embed_ids(query.ids).unsqueeze(0).to(root_embed.dtype)], dim=1)
    q = embeds.shape[1]
    device = embeds.device
    mask = None
    if query.allowed is not None:
        mask = tree_masks(model.llm.config, query, cache.get_seq_length(), embeds.dtype, device)
    try:
        hidden = decoder(
            inputs_embeds=embeds,
            cache=cache,
            use_cache=True,
            position_ids=query.position_ids.to(device),
            attention_mask=mask,
        ).last_hidden_state[0]
    finally:
        cache.crop(-q)
    flat = [r for rows in query.rows for r in rows]
    return hidden[torch.tensor(flat, device=device)]


@torch.no_grad()
def kl_rows(llm, clean: torch.Tensor, perturbed: torch.Tensor, chunk: int = 128) -> torch.Tensor:
    """Per-row KL(P_clean || P_perturbed) over the vocabulary, from final hidden states (R, D):
    logits in chunks of rows, float32 log-softmax as the official code (its logits are float32).
    Returns (R,) float32 on the CPU."""
    _, head = _decoder_and_head(llm)
    out = []
    for start in range(0, clean.shape[0], chunk):
        logp = torch.log_softmax(head(clean[start : start + chunk]).float(), dim=-1)
        logq = torch.log_softmax(head(perturbed[start : start + chunk]).float(), dim=-1)
        # KL is >= 0; float32 rounding can give -1e-9 for (nearly) equal rows: clamp those.
        out.append((logp.exp() * (logp - logq)).sum(dim=-1).clamp_min(0).cpu())
        del logp, logq
    return torch.cat(out) if out else torch.zeros(0)


def split_rows(values: torch.Tensor, plan: ScoringPlan) -> list[list[float]]:
    per_step, start = [], 0
    for step in plan.steps:
        n = len(step.targets)
        per_step.append([float(v) for v in values[start : start + n]])
        start += n
    return per_step


# ---- perturbed AV blocks -------------------------------------------------------------------------


def _frame_view(block: torch.Tensor, layout) -> torch.Tensor:
    """(F, 182 + audio_per_frame, D) view of the interleaved part of an AV block."""
    per_frame = layout.frames[0].audio[1] if layout.frames else 0
    return block[: layout.n_frames * per_frame].view(layout.n_frames, per_frame, block.shape[-1])


@torch.no_grad()
def perturbed_block(
    model, clean_block: torch.Tensor, layout, media: AVTensors, changes: frozenset[str]
) -> torch.Tensor:
    """The AV block of perturbed ``media``, running only the encoders of what changed. Equal to
    ``model.encode_media(media...).av_block``: the untouched modality's tokens are the clean ones."""
    if not changes:
        return clean_block.clone()
    if changes >= {"video", "audio"}:
        return model.encode_media(media.pixel_values, media.spectrogram, media.real_time).av_block
    frames = _frame_view(clean_block, layout)
    video_len = frames.shape[1] - layout.audio_tokens_per_frame
    if changes == {"video"}:
        block = clean_block.clone()
        video = model.encode_frames(media.pixel_values).to(block.dtype)  # (F,182,D)
        _frame_view(block, layout)[:, :video_len] = video
        return block
    video = frames[:, :video_len]
    audio = model.encode_audio(media.spectrogram)
    return model.interleave(video, audio, media.real_time).to(clean_block.dtype)


# ---- scores --------------------------------------------------------------------------------------


def step_kls(
    model,
    tokenizer,
    prompt_ids: Sequence[int],
    step_texts: Sequence[str],
    clean_block: torch.Tensor,
    perturbed_blocks: dict[str, torch.Tensor | Callable[[], torch.Tensor]],
    settings: ScoringSettings = ScoringSettings(),
    clean_cache=None,
) -> dict[str, list[list[float]]]:
    """Per-token KLs of every step under each perturbed AV block: ``{name: [[kl per token] per
    step]}``. One clean prefill + query, then one prefill + query per perturbation; the clean
    hidden rows (R x D) are all that is kept between them. A block may be given as a callable
    so that only one perturbed block lives at a time.

    ``clean_cache``: a DynamicCache whose first positions are this prompt under the clean block
    (e.g. the generation Decoder's cache once the trace is done) saves the clean prefill; it is
    cropped to the prompt minus its last token and left so."""
    if not step_texts:
        return {name: [] for name in perturbed_blocks}
    plan = plan_steps(tokenizer, step_texts, share_trunk=settings.share_trunk)
    prompt_len = len(prompt_ids) - sum(1 for t in prompt_ids if t < 0) + clean_block.shape[0]
    query = build_tree_query(plan, prompt_len)

    if clean_cache is not None:
        extra = clean_cache.get_seq_length() - (prompt_len - 1)
        if extra < 0 or prompt_ids[-1] < 0:
            raise ValueError("clean_cache must hold at least the whole prompt")
        if extra:
            clean_cache.crop(-extra)
        cache = clean_cache
        root = model.embed_ids([prompt_ids[-1]]).unsqueeze(0).to(clean_block.dtype)
    else:
        cache, root = prefill(model, prompt_ids, clean_block)
    clean_rows = query_hidden_rows(model, cache, root, query, prompt_len)
    del cache
    result = {}
    for name, block in perturbed_blocks.items():
        block = block() if callable(block) else block
        cache, root = prefill(model, prompt_ids, block)
        rows = query_hidden_rows(model, cache, root, query, prompt_len)
        del cache, block
        result[name] = split_rows(kl_rows(model.llm, clean_rows, rows, settings.logits_chunk), plan)
    return result


@torch.no_grad()
def official_step_kls(
    model,
    tokenizer,
    prompt_ids: Sequence[int],
    step_texts: Sequence[str],
    clean_block: torch.Tensor | Callable[[], torch.Tensor],
    perturbed_block_: torch.Tensor | Callable[[], torch.Tensor],
    full_logits: bool = False,
) -> list[list[float]]:
    """The straightforward reference, as ``contrast_probs`` does it: for every step, one full
    pass over prompt + tok(prev_k) + tok(s_k) with the clean block and one with the perturbed
    block, KL at the step's rows. Blocks may be callables, called for every pass (the official
    code re-encodes the clip, and draws fresh noise, on every call). ``full_logits`` also makes
    the float32 [sequence x vocabulary] logits the official code makes (for the benchmark's
    memory figure); the values are the same either way."""
    out = []
    for k, text in enumerate(step_texts):
        prefix = _tok(tokenizer, prev_text(step_texts, k))
        targets = _tok(tokenizer, text)
        ids = list(prompt_ids) + prefix + targets
        n = len(targets)
        logps = []
        for block in (clean_block, perturbed_block_):
            block = block() if callable(block) else block
            embeds = model.embed_prompt(ids, [block])
            if full_logits:
                logits = model.llm(inputs_embeds=embeds).logits.float()[0, -n - 1 : -1]
            else:
                logits = model.llm(inputs_embeds=embeds, logits_to_keep=n + 1).logits.float()[0, :-1]
            logps.append(torch.log_softmax(logits, dim=-1))
            del logits, embeds
        logp, logq = logps
        out.append([float(v) for v in (logp.exp() * (logp - logq)).sum(dim=-1)])
    return out


def mean_kl(token_kl: Sequence[float]) -> float | None:
    return float(sum(token_kl) / len(token_kl)) if token_kl else None


def flag_top_t(trace: Trace, t: int) -> list[int]:
    """Set ``Step.top_t`` on the ``t`` highest-scoring steps (ties: earlier first)."""
    top = set(trace.top_steps(t))
    for step in trace.steps:
        step.top_t = step.index in top
    return sorted(top)


def token_pieces(tokenizer, ids: Sequence[int]) -> list[str]:
    """The text of each token, such that the pieces join to ``tokenizer.decode(ids)``: a UTF-8
    character split over byte-level tokens belongs to the token that completes it."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    byte_of = {ch: b for b, ch in bytes_to_unicode().items()}
    pieces, pending = [], b""
    for token in tokenizer.convert_ids_to_tokens(list(ids)):
        if token in tokenizer.all_special_tokens or any(ch not in byte_of for ch in token):
            data = token.encode("utf-8")
        else:
            data = bytes(byte_of[ch] for ch in token)
        pending += data
        for cut in range(len(pending), -1, -1):
            try:
                text = pending[:cut].decode("utf-8")
            except UnicodeDecodeError:
                continue
            pieces.append(text)
            pending = pending[cut:]
            break
    if pending and pieces:
        pieces[-1] += pending.decode("utf-8", errors="replace")
    return pieces


def trace_prompt_ids(tokenizer, trace: Trace) -> list[int]:
    """The official prompt ids of a trace, rebuilt from its question, options and kind."""
    from inference.model.prompts import build_prompt

    prompt = build_prompt(tokenizer, trace.prompt_kind, trace.question, trace.options)
    if trace.prompt and trace.prompt != prompt.text:
        raise ScoringError(
            "the trace's prompt differs from the one its question and options build; "
            "re-run the trace with this version of the tool"
        )
    return list(prompt.ids)


def as_av_tensors(media) -> AVTensors:
    return AVTensors(media.pixel_values, media.spectrogram, float(media.real_time))


def score_trace(
    loaded,
    media,
    trace: Trace,
    perturbations: Sequence[str] = ("noise",),
    top_t: int = 3,
    seed: int = 0,
    encoded=None,
    perturbed: dict[str, AVTensors] | None = None,
    settings: ScoringSettings | None = None,
    clean_cache=None,
) -> Trace:
    """Score every step of ``trace`` under each perturbation, in place, and return the trace.

    ``loaded``: a LoadedModel; ``media``: the clip's MediaInputs (or anything with
    pixel_values, spectrogram and real_time); ``encoded``: the clip's clean EncodedMedia when the
    caller has it (skips the clean encoders); ``perturbed``: precomputed perturbed media by name
    (e.g. the golden fixed noisy video) instead of drawing them from ``seed``; ``clean_cache``:
    the generation Decoder's DynamicCache (prompt fed with the clean clip), which saves the
    clean prefill and is cropped to the prompt (see ``step_kls``).

    Sets ``step.scores[name]`` (mean KL), ``step.token_kls[name]`` (per token of tok(s_k)),
    ``step.kl_tokens`` (those tokens' text), ``step.score`` / ``step.token_kl`` (the first
    perturbation's, the paper's "noise" by default), ``step.top_t`` (the ``top_t`` highest
    scores), ``trace.scoring`` (the settings) and ``trace.timings["score_s"]``.
    """
    settings = settings or ScoringSettings(perturbations=tuple(perturbations), top_t=top_t, seed=seed)
    names = list(dict.fromkeys(settings.perturbations))
    if not names:
        raise ScoringError("no perturbation asked for; pass at least one, e.g. noise")
    for name in names:
        get_perturbation(name)
    perturbed = perturbed or {}
    model, tokenizer = loaded.model, loaded.tokenizer
    t0 = time.perf_counter()
    clean = as_av_tensors(media)
    if encoded is None:
        encoded = model.encode_media(clean.pixel_values, clean.spectrogram, clean.real_time)

    def block_for(name: str) -> Callable[[], torch.Tensor]:
        def make() -> torch.Tensor:
            changed = perturbed[name] if name in perturbed else perturb(name, clean, settings.seed)
            changes = get_perturbation(name).changes
            return perturbed_block(model, encoded.av_block, encoded.layout, changed, changes)

        return make

    texts = [s.text for s in trace.steps]
    kls = step_kls(
        model,
        tokenizer,
        trace_prompt_ids(tokenizer, trace),
        texts,
        encoded.av_block,
        {name: block_for(name) for name in names},
        settings,
        clean_cache=clean_cache,
    )
    for k, step in enumerate(trace.steps):
        step.scores = {**step.scores}
        step.token_kls = {**step.token_kls}
        for name in names:
            step.token_kls[name] = kls[name][k]
            step.scores[name] = mean_kl(kls[name][k])
        step.token_kl = step.token_kls[names[0]]
        step.score = step.scores[names[0]]
        step.kl_tokens = token_pieces(tokenizer, _tok(tokenizer, step.text))
    flag_top_t(trace, settings.top_t)
    trace.scoring = {
        "perturbations": names,
        "primary": names[0],
        "top_t": settings.top_t,
        "seed": settings.seed,
        "noise_t": NOISE_STEP,
        "convention": CONVENTION,
        "precomputed": sorted(perturbed),
    }
    trace.timings["score_s"] = round(time.perf_counter() - t0, 4)
    return trace
