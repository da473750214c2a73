"""Audio length rules, 30 s chunking, per-chunk log-mel, silence, and where the audio comes from."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from inference.media import (
    CHUNK_SAMPLES,
    DecodeOptions,
    LogMelStream,
    fit_audio,
    load_audio_file,
    load_media,
    log_mel,
    n_audio_chunks,
)

SR = 16000
KEEP = DecodeOptions(keep_waveform=True)


@pytest.mark.parametrize(
    ("samples", "real_time", "expected"),
    [
        (8000, 3.0, 16000),  # padded to 1 s, the cut at 3 s keeps it at 1 s
        (160000, 6.006, 96096),  # cut at round(16000 * real_time)
        (40000, 6.0, 40000),  # shorter than the clip: stays short (no padding to the clip)
        (0, 2.5, 40000),  # no audio: zeros of the clip's length
        (0, 0.5, 8000),  # under 1 s: padded to 1 s, then cut at the clip's length
    ],
)
def test_fit_audio(samples, real_time, expected):
    wave = np.full(samples, 0.25, dtype=np.float32)
    fitted = fit_audio(wave, real_time)
    assert len(fitted) == expected
    assert np.all(fitted[:samples] == 0.25) and np.all(fitted[samples:] == 0)


@pytest.mark.parametrize(
    ("samples", "chunks"), [(1, 1), (CHUNK_SAMPLES, 1), (CHUNK_SAMPLES + 1, 2), (1_120_000, 3)]
)
def test_n_audio_chunks(samples, chunks):
    assert n_audio_chunks(samples) == chunks


def test_log_mel_is_per_chunk_whisper_large_v3():
    from transformers import WhisperFeatureExtractor

    rng = np.random.default_rng(0)
    wave = np.concatenate([0.5 * rng.standard_normal(CHUNK_SAMPLES), 0.001 * rng.standard_normal(SR * 10)])
    spec = log_mel(wave.astype(np.float32))
    assert spec.dtype == torch.float32 and tuple(spec.shape) == (2, 128, 3000)
    reference = WhisperFeatureExtractor(feature_size=128)  # large-v3: 128 mel bins, else defaults
    for i, chunk in enumerate([wave[:CHUNK_SAMPLES], wave[CHUNK_SAMPLES:]]):
        expected = reference(chunk.astype(np.float32), sampling_rate=SR, return_tensors="np")[
            "input_features"
        ]
        torch.testing.assert_close(spec[i], torch.from_numpy(expected[0]), rtol=0, atol=1e-5)
    # each chunk has its own floor (max - 8 in log10, i.e. a range of 2 after (x + 4) / 4): the
    # quiet chunk is not pressed to the loud chunk's floor
    for chunk in spec:
        assert chunk.max() - chunk.min() <= 2.0 + 1e-6
    assert spec[1].max() < spec[0].max() - 0.5


def test_silence_spectrogram_is_constant():
    spec = log_mel(np.zeros(SR * 3, dtype=np.float32))
    assert torch.equal(spec, torch.full((1, 128, 3000), -1.5))  # (log10(1e-10) + 4) / 4


def test_clip_without_audio_gets_silence(silent_clip):
    inputs = load_media(silent_clip, options=KEEP)
    assert (inputs.clip.has_audio, inputs.audio_source) == (False, "silence")
    assert inputs.audio_samples == 48000 and len(inputs.waveform) == 48000 and not inputs.waveform.any()
    assert torch.equal(inputs.spectrogram, torch.full((1, 128, 3000), -1.5))


def test_container_audio_is_cut_at_the_clip(short_clip):
    inputs = load_media(short_clip)
    assert (inputs.clip.has_audio, inputs.audio_source) == (True, "container")
    assert inputs.audio_samples == 48000  # 3 s of video, the AAC track is a little longer
    assert tuple(inputs.spectrogram.shape) == (1, 128, 3000)


def test_audio_shorter_than_the_clip_stays_short(make_clip):
    inputs = load_media(make_clip("short_audio.mp4", seconds=3, fps=10, audio_seconds=1.5))
    assert 1.4 * SR < inputs.audio_samples < 1.6 * SR


def test_long_audio_is_chunked(make_clip):
    path = make_clip("70s.mp4", seconds=70, fps=8, size=(80, 48), sample_rate=16000, channels=1, gop=8)
    inputs = load_media(path)
    assert inputs.audio_samples == 70 * SR
    assert tuple(inputs.spectrogram.shape) == (3, 128, 3000)
    assert inputs.n_chunks == n_audio_chunks(inputs.audio_samples) == 3


def dominant_hz(wave: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(wave))
    return float(np.fft.rfftfreq(len(wave), 1 / SR)[spectrum.argmax()])


def test_stereo_mix_and_first_channel(short_clip):
    """The test clip has 440 Hz on the left and 660 Hz on the right."""
    mixed = load_media(short_clip, options=KEEP).waveform
    first = load_media(short_clip, options=DecodeOptions(stereo="first", keep_waveform=True)).waveform
    assert dominant_hz(first[SR:]) == pytest.approx(440, abs=2)
    spectrum = np.abs(np.fft.rfft(mixed[SR:]))
    freqs = np.fft.rfftfreq(len(mixed[SR:]), 1 / SR)
    assert set(np.round(freqs[np.argsort(spectrum)[-2:]], -1)) == {440.0, 660.0}
    # mix = (L + R) / 2 as ffmpeg -ac 1 writes it: peak ~ 0.3 (both tones at 0.3 amplitude)
    assert 0.25 < np.abs(mixed[SR:]).max() <= 0.31


def test_separate_wav_is_channel_0_unchanged(short_clip, tmp_path):
    rng = np.random.default_rng(1)
    stereo = (rng.uniform(-0.5, 0.5, size=(SR * 2, 2)) * 32767).astype(np.int16)
    wav = tmp_path / "audio.wav"
    sf.write(wav, stereo, SR, subtype="PCM_16")
    expected = sf.read(wav)[0][:, 0]  # what the official loader computes
    assert np.array_equal(load_audio_file(wav), expected.astype(np.float32))
    inputs = load_media(short_clip, audio_path=wav, options=KEEP)
    assert (inputs.audio_source, inputs.clip.has_audio, inputs.audio_samples) == ("file", True, 2 * SR)
    assert np.array_equal(inputs.waveform, expected.astype(np.float32))


def test_separate_audio_at_another_rate_is_resampled(tmp_path):
    tone = 0.3 * np.sin(2 * np.pi * 500 * np.arange(44100 * 2) / 44100)
    wav = tmp_path / "tone44k.wav"
    sf.write(wav, tone, 44100)
    wave = load_audio_file(wav)
    assert abs(len(wave) - 2 * SR) <= 32
    assert dominant_hz(wave) == pytest.approx(500, abs=2)


@pytest.mark.parametrize(
    ("samples", "real_time", "pieces"),
    [
        (0, 2.5, 1),  # no audio: zeros of the clip's length
        (8000, 3.0, 3),  # short audio: padded to 1 s
        (CHUNK_SAMPLES, 30.0, 7),  # exactly one chunk
        (CHUNK_SAMPLES * 2 + 5, 61.0, 11),  # a 5-sample last chunk, normalised on its own
        (1_200_000, 70.47, 13),  # cut at the clip (1,127,520 samples)
    ],
)
def test_streamed_log_mel_equals_the_whole_wave(samples, real_time, pieces):
    """Audio streamed in uneven pieces gives exactly the whole-array result."""
    wave = (0.1 * np.random.default_rng(samples).standard_normal(samples)).astype(np.float32)
    stream = LogMelStream(real_time, keep_waveform=True)
    for piece in np.array_split(wave, pieces):
        stream.add(piece)
    spectrogram, count, kept = stream.finish()
    expected_wave = fit_audio(wave, real_time)
    assert count == len(expected_wave) and np.array_equal(kept, expected_wave)
    assert torch.equal(spectrogram, log_mel(expected_wave))


def test_waveform_is_kept_only_on_request(short_clip):
    assert load_media(short_clip).waveform is None
