"""The released model's widths on the CPU: loading it, its first-token logits and one clip end to
end; shared by ``bench/realwidth.py`` (the GPU prediction) and ``tests/realsize`` (NF4 vs full)."""

from __future__ import annotations

import time
from pathlib import Path


def load(folders, quantization: str, dtype: str):
    from inference.model.loading import LoadSettings, load_model

    settings = LoadSettings(
        checkpoint=str(folders.checkpoint),
        device="cpu",
        quantization=quantization,
        dtype=dtype,
        sources=folders.sources,
    )
    return load_model(settings)


def prompt_logits(loaded, media, encoded=None):
    """Float32 logits of the token after the reasoning prompt (the first generated token)."""
    import torch

    from inference.model.prompts import build_prompt
    from inference.reasoning.generate import Decoder

    model = loaded.model
    prompt = build_prompt(loaded.tokenizer, "reasoning", "What happens in the video?", ["A", "B", "C"])
    with torch.no_grad():
        encoded = encoded or model.encode_media(media.pixel_values, media.spectrogram, media.real_time)
        logits = Decoder(model).feed_embeds(model.embed_prompt(list(prompt.ids), [encoded.av_block]))
    return logits.float().reshape(-1), encoded


def end_to_end(loaded, media, max_new_tokens: int):
    """Steps, answer and noise scores of one clip (what the app does), with wall times."""
    from inference.reasoning.generate import DecodingSettings, ReasoningRequest, run_reasoning
    from inference.reasoning.scoring import score_trace

    request = ReasoningRequest(
        question="What happens in the video?",
        options=["A person talks", "A dog runs", "Nothing happens"],
        decoding=DecodingSettings(max_new_tokens=max_new_tokens, answer_max_new_tokens=4),
    )
    started = time.perf_counter()
    trace = run_reasoning(loaded, media, request)
    generate_s = time.perf_counter() - started
    started = time.perf_counter()
    score_trace(loaded, media, trace, perturbations=("noise",))
    return trace, generate_s, time.perf_counter() - started


def logits_agreement(reference, other) -> dict[str, float]:
    """How far ``other`` is from ``reference``: relative L2 error, cosine, top-1 agreement."""
    import torch

    error = (other - reference).norm() / reference.norm()
    cosine = torch.nn.functional.cosine_similarity(reference, other, dim=0)
    return {
        "relative_l2": float(error),
        "cosine": float(cosine),
        "same_top1": float(int(reference.argmax()) == int(other.argmax())),
    }


def short_clip(path: Path, frames: int):
    from inference.media import load_media
    from inference.media.limits import MediaLimits

    return load_media(path, MediaLimits(max_frames=frames))
