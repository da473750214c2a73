"""Perturbations of a clip's media tensors, by name, for the contrastive step scores.

A perturbation takes the model-ready tensors of a clip (normalised frames ``(F,3,384,384)``,
log-mel ``(C,128,3000)``) and a seeded ``torch.Generator`` and returns new tensors. Each one
declares which modality it changes, so the scorer re-runs only that encoder and reuses the
clean tokens of the other.

- ``noise``: the paper's perturbation, VCD diffusion noise at step t = 100 on the normalised
  pixels, audio untouched (official ``llava/vcd_utils/vcd_add_noise.py``, called from
  ``llava_trainer.py:1550`` with ``noise_step=100``).
- ``mute``: the spectrogram of silence, i.e. what the media pipeline gives for an all-zero
  waveform, video untouched. Ours, not the paper's: shows whether a step leans on sound.
- ``shuffle``: frames permuted in time (a seeded permutation that is never the identity when
  there are two frames or more), audio untouched. Ours: shows whether a step leans on order.
- ``none``: the identity (every score is then exactly 0; used by tests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch

from inference.errors import UserError

DIFFUSION_STEPS = 1000  # length of the VCD beta schedule
NOISE_STEP = 100  # official contrast_probs: add_diffusion_noise(images, 100)

# What Whisper's feature extractor does to a power spectrum (transformers
# WhisperFeatureExtractor._np_extract_fbank_features, the official audio front end): log10 of
# the mel power clamped at 1e-10, floored at (max - 8), then (x + 4) / 4.
_LOG_MEL_FLOOR = 1e-10
_LOG_MEL_DYNAMIC_RANGE = 8.0


class UnknownPerturbationError(UserError):
    """A perturbation name that is not in the registry."""


class AVTensors(NamedTuple):
    """Model-ready tensors of one clip (the fields of ``inference.media.MediaInputs`` that the
    encoders read)."""

    pixel_values: torch.Tensor  # (F,3,384,384) normalised to [-1, 1]
    spectrogram: torch.Tensor  # (C,128,3000) Whisper log-mel, one row per 30 s chunk
    real_time: float  # seconds of clip the frames cover (drives the interleaving)


@dataclass(frozen=True)
class Perturbation:
    name: str
    changes: frozenset[str]  # subset of {"video", "audio"}: which encoder must run again
    apply: Callable[[AVTensors, torch.Generator], AVTensors]
    description: str


def diffusion_coefficients(step: int = NOISE_STEP, n_steps: int = DIFFUSION_STEPS) -> tuple[float, float]:
    """``(sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t))`` of the VCD schedule, computed in float32
    as the official code does: betas = sigmoid(linspace(-6, 6, 1000)) * (5e-3 - 1e-5) + 1e-5,
    alpha_bar = cumprod(1 - betas), indexed at ``step`` (0-based). For t = 100:
    (0.9982928037643433, 0.05840780586004257)."""
    betas = torch.sigmoid(torch.linspace(-6, 6, n_steps)) * (0.5e-2 - 1e-5) + 1e-5
    alpha_bar = torch.cumprod(1 - betas, dim=0)
    return float(torch.sqrt(alpha_bar)[step]), float(torch.sqrt(1 - alpha_bar)[step])


def add_diffusion_noise(
    pixel_values: torch.Tensor, generator: torch.Generator, step: int = NOISE_STEP
) -> torch.Tensor:
    """``sqrt(ab_t) * x + sqrt(1 - ab_t) * eps`` with ``eps ~ N(0, 1)`` drawn on the CPU from
    ``generator`` (so the noise is the same on every device), computed in float32 and returned
    in the input's dtype. The official code draws ``randn_like`` from the global RNG in the
    image's dtype (bf16 at inference); the distribution is the same, the draws are not."""
    signal, noise_scale = diffusion_coefficients(step)
    eps = torch.randn(pixel_values.shape, generator=generator, dtype=torch.float32)
    noisy = signal * pixel_values.float() + noise_scale * eps.to(pixel_values.device)
    return noisy.to(pixel_values.dtype)


def silent_spectrogram(like: torch.Tensor) -> torch.Tensor:
    """The log-mel of an all-zero waveform, shaped like ``like`` ``(C,128,3000)``: every bin is
    log10(1e-10) = -10, the floor max - 8 does not bite, and (-10 + 4) / 4 = -1.5."""
    value = (torch.log10(torch.tensor(_LOG_MEL_FLOOR, dtype=torch.float64)).item() + 4.0) / 4.0
    return torch.full_like(like, value)


def shuffle_permutation(n_frames: int, generator: torch.Generator) -> torch.Tensor:
    """A seeded permutation of ``range(n_frames)`` that is not the identity (n_frames >= 2);
    redrawn from the same generator until it moves something, so it stays reproducible."""
    if n_frames < 2:
        return torch.arange(n_frames)
    identity = torch.arange(n_frames)
    while True:
        perm = torch.randperm(n_frames, generator=generator)
        if not torch.equal(perm, identity):
            return perm


def _identity(media: AVTensors, generator: torch.Generator) -> AVTensors:
    return media


def _noise(media: AVTensors, generator: torch.Generator) -> AVTensors:
    return media._replace(pixel_values=add_diffusion_noise(media.pixel_values, generator))


def _mute(media: AVTensors, generator: torch.Generator) -> AVTensors:
    return media._replace(spectrogram=silent_spectrogram(media.spectrogram))


def _shuffle(media: AVTensors, generator: torch.Generator) -> AVTensors:
    perm = shuffle_permutation(media.pixel_values.shape[0], generator)
    return media._replace(pixel_values=media.pixel_values[perm.to(media.pixel_values.device)])


PERTURBATIONS: dict[str, Perturbation] = {
    p.name: p
    for p in (
        Perturbation(
            "noise", frozenset({"video"}), _noise, "video with diffusion noise at t=100 (the paper's)"
        ),
        Perturbation("mute", frozenset({"audio"}), _mute, "audio replaced by silence"),
        Perturbation("shuffle", frozenset({"video"}), _shuffle, "frames shuffled in time"),
        Perturbation("none", frozenset(), _identity, "no change (every score is 0)"),
    )
}


def get_perturbation(name: str) -> Perturbation:
    try:
        return PERTURBATIONS[name]
    except KeyError:
        raise UnknownPerturbationError(
            f"unknown perturbation {name!r}; choose from {', '.join(PERTURBATIONS)}"
        ) from None


def perturbation_names(text: str) -> tuple[str, ...]:
    """``"noise, mute"`` -> ``("noise", "mute")``: the commands' ``--perturb`` list (names unchecked)."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def perturbation_generator(seed: int, name: str) -> torch.Generator:
    """Each perturbation draws from its own generator seeded by ``seed`` alone, so a score does
    not depend on which other perturbations were asked for or in which order."""
    return torch.Generator(device="cpu").manual_seed(int(seed))


def perturb(name: str, media: AVTensors, seed: int = 0) -> AVTensors:
    """Apply perturbation ``name`` to ``media`` with the given seed."""
    return get_perturbation(name).apply(media, perturbation_generator(seed, name))
