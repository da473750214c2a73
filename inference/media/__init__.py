"""Media pipeline: a clip file -> the model's inputs, exactly as the official preprocessing.

    from inference.media import load_media, probe_clip, MediaLimits
    inputs = load_media("clip.mp4")  # MediaInputs
    inputs.pixel_values  # (F, 3, 384, 384) float32, F <= 60 frames at 2 fps
    inputs.spectrogram  # (C, 128, 3000) float32, one Whisper-large-v3 log-mel per 30 s chunk
    inputs.clip  # ClipInfo: sha256, duration, fps, display size, has_audio, frame times

Modules: ``limits`` (configs and model constants), ``container`` (open, validate, index),
``frames`` (sampling and pixel values), ``audio`` (waveform and log-mel), ``pipeline`` (the whole).
Bad input raises a subclass of ``inference.errors.MediaError`` with a one-line message.
"""

from inference.media.audio import LogMelStream, fit_audio, load_audio_file, log_mel, n_audio_chunks
from inference.media.frames import PIXEL_LUT, sample_frame_indices, to_pixel_values
from inference.media.limits import (
    CHUNK_SAMPLES,
    IMAGE_SIZE,
    SAMPLE_RATE,
    DecodeOptions,
    MediaLimits,
)
from inference.media.pipeline import MediaInputs, llm_token_cost, load_media, probe_clip

__all__ = [
    "CHUNK_SAMPLES",
    "IMAGE_SIZE",
    "PIXEL_LUT",
    "SAMPLE_RATE",
    "DecodeOptions",
    "LogMelStream",
    "MediaInputs",
    "MediaLimits",
    "fit_audio",
    "llm_token_cost",
    "load_audio_file",
    "load_media",
    "log_mel",
    "n_audio_chunks",
    "probe_clip",
    "sample_frame_indices",
    "to_pixel_values",
]
