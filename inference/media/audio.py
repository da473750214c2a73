"""Audio -> 16 kHz mono waveform -> Whisper-large-v3 log-mel chunks (C, 128, 3000).

Official rules (av_test_dataset.py:262-282): the waveform is padded with zeros to at least 1 s,
cut to ``round(16000 * real_time)`` samples, split into 30 s chunks, and each chunk goes through
WhisperFeatureExtractor (zero-padded to 30 s, log10 clamped at 1e-10, floored at its own max - 8,
``(x + 4) / 4``). A clip without audio gets zeros of the clip's length (the same thing).

Sources:
- the clip's own audio track (decoded on a thread of its own, beside the video decoding);
  stereo is averaged exactly as ``ffmpeg -ac 1 -ar 16000 -c:a pcm_s16le`` does (0.5 L + 0.5 R,
  16-bit), which is how the official test WAVs were made from their clips, so the result equals
  the official WAV to 1 LSB. ``DecodeOptions.stereo = "first"`` keeps channel 0 instead.
- a separate audio file (the official test data pairs each clip with a 16 kHz WAV): channel 0 as
  the official loader does (``audio[:, 0]``), resampled to 16 kHz when it is not already.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import av
import numpy as np

from inference.errors import AudioFileError, MediaError
from inference.media.container import check_file
from inference.media.limits import CHUNK_SAMPLES, MEL_FRAMES, N_MELS, SAMPLE_RATE

log = logging.getLogger(__name__)


class AudioCollector:
    """Decodes audio packets as a demuxer hands them over -> 16 kHz float32 mono.

    Bad packets are skipped, as FFmpeg's command line does; ``samples()`` is empty when none
    decoded (the clip is then treated as silent).
    """

    def __init__(self, stream: av.audio.stream.AudioStream, stereo: str = "mix"):
        if stereo not in ("mix", "first"):
            raise ValueError(f"stereo must be 'mix' or 'first', not {stereo!r}")
        self.stream = stream
        self.first_channel = stereo == "first"
        # s16 as the official WAVs; "mix" lets swresample downmix (it normalises for s16 output:
        # 0.5 L + 0.5 R, while float output would give 0.707 L + 0.707 R)
        layout = None if self.first_channel else "mono"
        fmt = "s16p" if self.first_channel else "s16"
        self.resampler = av.AudioResampler(format=fmt, layout=layout, rate=SAMPLE_RATE)
        self.parts: list[np.ndarray] = []
        self.bad_packets = 0

    def __call__(self, packet: av.Packet) -> None:
        try:
            frames = packet.decode()
        except av.FFmpegError:
            self.bad_packets += 1
            return
        for frame in frames:
            self._add(self.resampler.resample(frame))

    def _add(self, frames: list[av.AudioFrame]) -> None:
        for frame in frames:
            self.parts.append(frame.to_ndarray()[0])  # (channels, n) int16 -> channel 0 / mono

    def samples(self) -> np.ndarray:
        """All decoded audio so far, (S,) float32 in [-1, 1)."""
        try:
            self._add(self.stream.codec_context.decode(None))
            self._add(self.resampler.resample(None))
        except av.FFmpegError:
            self.bad_packets += 1
        if self.bad_packets:
            log.warning("%d audio packets could not be decoded and were skipped", self.bad_packets)
        if not self.parts:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(self.parts).astype(np.float32) / np.float32(32768)


def decode_container_audio(path: str | Path, stream_index: int, stereo: str = "mix") -> np.ndarray:
    """The clip's own audio track (stream ``stream_index``) -> (S,) float32 16 kHz mono.

    Opens the file on its own, so it can run on a thread beside the video decoding. A track
    damaged part way keeps what decoded before the damage.
    """
    with av.open(str(path), metadata_errors="ignore") as container:
        stream = container.streams[stream_index]
        collector = AudioCollector(stream, stereo)
        try:
            for packet in container.demux(stream):
                if packet.size:
                    collector(packet)
        except av.FFmpegError:
            log.warning("%s: the audio track is damaged; keeping what decoded", Path(path).name)
        return collector.samples()


def load_audio_file(path: str | Path, max_file_mb: float | None = None) -> np.ndarray:
    """A separate audio file -> (S,) float32, channel 0, 16 kHz. Equals ``sf.read(wav)[:, 0]``
    for the official 16 kHz WAVs."""
    path = check_file(path, max_file_mb)
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioFileError(path.name, "not an audio file (it has no audio track)")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="fltp", layout=None, rate=SAMPLE_RATE)
            parts = []
            for frame in container.decode(stream):
                parts += [f.to_ndarray()[0] for f in resampler.resample(frame)]
            parts += [f.to_ndarray()[0] for f in resampler.resample(None)]
    except MediaError:
        raise
    except av.FFmpegError as exc:
        raise AudioFileError(path.name) from exc
    if not parts:
        raise AudioFileError(path.name, "an audio file without any sound that decodes")
    return np.concatenate(parts).astype(np.float32)


def fit_audio(wave: np.ndarray, real_time: float) -> np.ndarray:
    """Official length rule: pad with zeros to >= 1 s, then cut at round(16000 * real_time).
    An empty ``wave`` (no audio) gives zeros of the clip's length, as the official no-audio path."""
    if len(wave) == 0:  # official no-audio path: np.zeros(round(sr * real_time))
        wave = np.zeros(max(round(SAMPLE_RATE * real_time), 1), dtype=np.float32)
    if len(wave) < SAMPLE_RATE:
        wave = np.concatenate([wave, np.zeros(SAMPLE_RATE - len(wave), dtype=np.float32)])
    return wave[: max(round(SAMPLE_RATE * real_time), 1)]


def n_audio_chunks(audio_samples: int) -> int:
    """30 s Whisper chunks for a waveform of this many 16 kHz samples (the last may be short)."""
    return max(1, -(-audio_samples // CHUNK_SAMPLES))


@functools.cache
def whisper_feature_extractor():
    """Whisper-large-v3's feature extractor, built from its constructor arguments (the values of
    its preprocessor_config.json), so nothing is downloaded."""
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(
        feature_size=N_MELS,
        sampling_rate=SAMPLE_RATE,
        hop_length=160,
        chunk_length=30,
        n_fft=400,
        padding_value=0.0,
        return_attention_mask=False,
    )


def log_mel(wave: np.ndarray):
    """(S,) 16 kHz float waveform -> (C, 128, 3000) float32 torch tensor, one row per 30 s chunk,
    each normalised on its own as the official per-chunk extractor calls. One chunk at a time, so
    memory does not grow with the clip beyond the output itself."""
    import torch

    extractor = whisper_feature_extractor()
    chunks = [wave[k : k + CHUNK_SAMPLES] for k in range(0, max(len(wave), 1), CHUNK_SAMPLES)]
    out = torch.empty((len(chunks), N_MELS, MEL_FRAMES), dtype=torch.float32)
    for i, chunk in enumerate(chunks):
        features = extractor(chunk, sampling_rate=SAMPLE_RATE, return_tensors="np")["input_features"]
        out[i] = torch.from_numpy(features[0])
    return out
