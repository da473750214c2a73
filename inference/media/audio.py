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
from typing import TYPE_CHECKING

import av
import numpy as np

from inference.errors import AudioFileError, MediaError
from inference.media.container import check_file
from inference.media.limits import CHUNK_SAMPLES, MEL_FRAMES, N_MELS, SAMPLE_RATE, MediaLimits

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


class LogMelStream:
    """The official audio rules applied to audio that arrives in pieces: pad to >= 1 s, cut at
    ``round(16000 * real_time)``, log-mel of each 30 s chunk as soon as it is complete.

    Holds one chunk of audio (1.9 MB), so memory does not grow with the clip beyond the
    spectrogram itself; ``keep_waveform`` also keeps the fitted waveform. Equals
    ``log_mel(fit_audio(whole_wave, real_time))``.
    """

    def __init__(self, real_time: float, keep_waveform: bool = False):
        import torch

        self.limit = max(round(SAMPLE_RATE * real_time), 1)  # official cut
        self.buffer = np.zeros(CHUNK_SAMPLES, dtype=np.float32)
        self.filled = 0  # samples in the buffer
        self.total = 0  # samples taken so far (<= limit)
        capacity = -(-self.limit // CHUNK_SAMPLES)
        self.spectrogram = torch.empty((capacity, N_MELS, MEL_FRAMES), dtype=torch.float32)
        self.chunks = 0
        self.kept: list[np.ndarray] | None = [] if keep_waveform else None

    @property
    def full(self) -> bool:
        return self.total >= self.limit

    def add(self, samples: np.ndarray, scale: float = 1.0) -> None:
        """Append samples (any dtype; multiplied by ``scale`` into float32), up to the cut."""
        samples = samples[: self.limit - self.total]
        while len(samples):
            n = min(len(samples), CHUNK_SAMPLES - self.filled)
            target = self.buffer[self.filled : self.filled + n]
            np.multiply(samples[:n], np.float32(scale), out=target, casting="unsafe")
            self.filled += n
            self.total += n
            samples = samples[n:]
            if self.filled == CHUNK_SAMPLES:
                self._emit()

    def finish(self) -> tuple[torch.Tensor, int, np.ndarray | None]:
        """-> (C, 128, 3000) spectrogram, audio samples, the waveform if kept. No audio at all
        gives zeros of the clip's length (official no-audio path), short audio is padded to 1 s."""
        end = self.limit if self.total == 0 else min(SAMPLE_RATE, self.limit)
        while self.total < end:
            n = min(end - self.total, CHUNK_SAMPLES - self.filled)
            self.buffer[self.filled : self.filled + n] = 0
            self.filled += n
            self.total += n
            if self.filled == CHUNK_SAMPLES:
                self._emit()
        if self.filled:
            self._emit()
        spectrogram = self.spectrogram[: self.chunks]
        if self.chunks < len(self.spectrogram):  # audio ended before the clip: drop the spare rows
            spectrogram = spectrogram.clone()
        waveform = np.concatenate(self.kept) if self.kept is not None else None
        return spectrogram, self.total, waveform

    def _emit(self) -> None:
        import torch

        chunk = self.buffer[: self.filled]
        features = whisper_feature_extractor()(chunk, sampling_rate=SAMPLE_RATE, return_tensors="np")
        self.spectrogram[self.chunks] = torch.from_numpy(features["input_features"][0])
        self.chunks += 1
        if self.kept is not None:
            self.kept.append(chunk.copy())
        self.filled = 0


def decode_container_audio(
    path: str | Path, stream_index: int, sink: LogMelStream, stereo: str = "mix"
) -> int:
    """Decode the clip's own audio track (stream ``stream_index``) into ``sink`` as 16 kHz mono;
    stops once the sink is full. Returns the samples decoded (0: nothing decodes, a silent clip).

    Opens the file on its own, so it can run on a thread beside the video decoding. Bad packets
    are skipped, as FFmpeg's command line does; a track damaged part way keeps what came before.
    """
    if stereo not in ("mix", "first"):
        raise ValueError(f"stereo must be 'mix' or 'first', not {stereo!r}")
    # s16 as the official WAVs; "mix" lets swresample downmix (it normalises for s16 output:
    # 0.5 L + 0.5 R, while float output would give 0.707 L + 0.707 R); "first" keeps the
    # layout and takes plane 0
    resampler = av.AudioResampler(
        format="s16" if stereo == "mix" else "s16p",
        layout="mono" if stereo == "mix" else None,
        rate=SAMPLE_RATE,
    )
    decoded, bad = 0, 0

    def put(frames: list[av.AudioFrame]) -> None:
        nonlocal decoded
        for frame in frames:
            samples = frame.to_ndarray()[0]  # (channels, n) int16 -> mono / channel 0
            decoded += len(samples)
            sink.add(samples, 1 / 32768)

    with av.open(str(path), metadata_errors="ignore") as container:
        stream = container.streams[stream_index]
        try:
            for packet in container.demux(stream):
                if sink.full:
                    break
                if not packet.size:
                    continue
                try:
                    frames = packet.decode()
                except av.FFmpegError:
                    bad += 1
                    continue
                for frame in frames:
                    put(resampler.resample(frame))
            if not sink.full:
                put(stream.codec_context.decode(None))
                put(resampler.resample(None))
        except av.FFmpegError:
            bad += 1
    if bad:
        log.warning("%s: %d damaged audio packets skipped", Path(path).name, bad)
    return decoded


def load_audio_file(path: str | Path, max_file_mb: float | None = None) -> np.ndarray:
    """A separate audio file -> (S,) float32, channel 0, 16 kHz. Equals ``sf.read(wav)[:, 0]``
    for the official 16 kHz WAVs."""
    path = check_file(path, max_file_mb)
    try:
        # A video passed as the audio file: FFmpeg's header probe would decode one of its frames
        # at whatever size the stream claims (0.7 GB for 16000x16000) unless capped here.
        options = {"max_pixels": str(MediaLimits().max_pixels)}
        with av.open(str(path), metadata_errors="ignore", options=options) as container:
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
