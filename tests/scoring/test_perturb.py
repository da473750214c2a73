"""Perturbations: the official diffusion-noise schedule, silence, shuffled frames, by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.reasoning.perturb import (
    PERTURBATIONS,
    AVTensors,
    UnknownPerturbationError,
    add_diffusion_noise,
    diffusion_coefficients,
    get_perturbation,
    perturb,
    shuffle_permutation,
    silent_spectrogram,
)


@pytest.fixture
def media():
    g = torch.Generator().manual_seed(0)
    return AVTensors(torch.rand(5, 3, 8, 8, generator=g) * 2 - 1, torch.randn(2, 128, 30, generator=g), 12.5)


def test_noise_coefficients_are_the_official_float32_values():
    assert diffusion_coefficients(100) == (0.9982928037643433, 0.05840780586004257)


def test_noise_is_the_vcd_formula_with_seeded_eps(media):
    noisy = perturb("noise", media, seed=5)
    eps = torch.randn(media.pixel_values.shape, generator=torch.Generator().manual_seed(5))
    expected = 0.9982928037643433 * media.pixel_values + 0.05840780586004257 * eps
    torch.testing.assert_close(noisy.pixel_values, expected, atol=1e-7, rtol=0)
    assert noisy.spectrogram is media.spectrogram  # audio untouched
    assert noisy.real_time == media.real_time


def test_noise_keeps_the_dtype_and_is_reproducible(media):
    half = media.pixel_values.to(torch.bfloat16)
    out = add_diffusion_noise(half, torch.Generator().manual_seed(1))
    assert out.dtype == torch.bfloat16
    assert torch.equal(perturb("noise", media, 3).pixel_values, perturb("noise", media, 3).pixel_values)
    assert not torch.equal(perturb("noise", media, 3).pixel_values, perturb("noise", media, 4).pixel_values)


def test_mute_is_what_the_media_pipeline_gives_for_silence(media):
    from inference.media import log_mel

    muted = perturb("mute", media)
    assert muted.pixel_values is media.pixel_values  # video untouched
    silence = log_mel(np.zeros(16000 * 45, dtype=np.float32))  # two 30 s chunks of zeros
    assert silence.shape == (2, 128, 3000)
    torch.testing.assert_close(silent_spectrogram(silence), silence, atol=0, rtol=0)
    assert torch.equal(muted.spectrogram, torch.full_like(media.spectrogram, -1.5))


def test_shuffle_permutes_frames_never_the_identity(media):
    for seed in range(20):
        shuffled = perturb("shuffle", media, seed)
        perm = shuffle_permutation(5, torch.Generator().manual_seed(seed))
        assert sorted(perm.tolist()) == [0, 1, 2, 3, 4]
        assert perm.tolist() != [0, 1, 2, 3, 4]
        assert torch.equal(shuffled.pixel_values, media.pixel_values[perm])
        assert shuffled.spectrogram is media.spectrogram
    two = [shuffle_permutation(2, torch.Generator().manual_seed(s)).tolist() for s in range(5)]
    assert two == [[1, 0]] * 5
    assert shuffle_permutation(1, torch.Generator()).tolist() == [0]


def test_none_is_the_identity(media):
    assert perturb("none", media) is media


def test_each_perturbation_declares_what_it_changes():
    assert {name: set(p.changes) for name, p in PERTURBATIONS.items()} == {
        "noise": {"video"},
        "mute": {"audio"},
        "shuffle": {"video"},
        "none": set(),
    }


def test_an_unknown_name_says_which_exist():
    assert get_perturbation("mute") is PERTURBATIONS["mute"]
    with pytest.raises(UnknownPerturbationError) as raised:
        get_perturbation("blur")
    assert str(raised.value) == "unknown perturbation 'blur'; choose from noise, mute, shuffle, none"
