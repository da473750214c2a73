"""What the media pipeline accepts and how it decodes: frozen configs, a reason beside each default.

The model's own constants (384 px frames, 16 kHz audio, 30 s Whisper chunks) are not settings:
the released checkpoint was trained with them, so they are module constants here.
"""

from __future__ import annotations

from dataclasses import dataclass

IMAGE_SIZE = 384  # SigLIP so400m-patch14-384 input; official resize is straight to 384x384
SAMPLE_RATE = 16_000  # Whisper's rate; the official loader rejects anything else
CHUNK_SECONDS = 30  # one Whisper window: 480,000 samples -> 3000 mel frames
CHUNK_SAMPLES = SAMPLE_RATE * CHUNK_SECONDS
N_MELS = 128  # Whisper-large-v3
MEL_FRAMES = 3000  # per chunk (hop 160 samples = 10 ms)


@dataclass(frozen=True)
class MediaLimits:
    """What a caller accepts. The app sets the first two from its flags; the last two are the
    official sampling (av_test_dataset.py:226-232) and change what the model sees."""

    max_duration_s: float = 600.0  # 10 minutes: past this the 60 frames are > 10 s apart
    max_file_mb: float = 500.0  # a 10-minute 1080p phone clip fits; bigger uploads are a mistake
    # DCI 8K. The decoder allocates every frame at the size the H.264 SPS claims: a few-kB file
    # claiming 16000x16000 took 5.4 GB. Larger frames are refused before any is decoded (FFmpeg's
    # own max_pixels also stops the header probe at this size).
    max_pixels: int = 8192 * 4320
    max_frames: int = 60  # official max_time 30 s x video_fps 2
    fps: float = 2.0  # official video_fps: stride round(source_fps / 2)


@dataclass(frozen=True)
class DecodeOptions:
    """How frames and audio are read. The first four change only the work, never the pixels;
    ``apply_rotation`` and ``stereo`` choose between documented behaviours."""

    threads: int = 0  # decoder threads, 0 = FFmpeg's choice (one per core)
    skip_nonref: bool = True  # frames nothing refers to and we do not sample are never decoded
    seek: bool = True  # once a GOP's samples are decoded, jump to the next GOP holding one
    convert_threads: int = 1  # RGB + resize of sampled frames beside the decoder (0 = inline)
    apply_rotation: bool = True  # turn frames upright as a player would (decord 0.6.0 does not)
    # Stereo container audio: "mix" averages the channels exactly as ``ffmpeg -ac 1 -ar 16000``
    # (how the official test WAVs were made); "first" keeps channel 0 (what the official loader
    # does with a stereo WAV).
    stereo: str = "mix"
    trailing_frames_tolerance_s: float = 0.5  # missing frames at the very end are replaced
    keep_waveform: bool = False  # MediaInputs.waveform: 38 MB per 10 minutes the model never reads
