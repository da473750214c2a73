"""Where every frame's and every audio token's embeddings sit in the LLM input (pure Python).

The probe, the UI (which span of the clip a step leans on) and the model's own consistency
check all need the same arithmetic, without torch. It mirrors videosalmonno1.py:446-470:
``front = round(real_time * 50)`` audio tokens are interpolated up to a multiple of the frame
count and shared evenly between frames; the rest (only for clips shorter than 3 s) follows the
last frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

AV_PLACEHOLDER_ID = -200  # IMAGE_TOKEN_INDEX in the official code (llava/constants.py)
VIDEO_TOKENS_PER_FRAME = 182  # 13 rows x (13 pooled patches + 1 newline)
AUDIO_TOKENS_PER_CHUNK = 150  # one Q-Former query per 0.2 s window of a 30 s chunk
WHISPER_FRAMES_PER_SECOND = 50  # Whisper encoder output rate: 1500 frames per 30 s chunk


@dataclass(frozen=True)
class FrameSpan:
    """Offsets inside the AV block (end exclusive)."""

    video: tuple[int, int]
    audio: tuple[int, int]


@dataclass(frozen=True)
class AVLayout:
    n_frames: int
    audio_tokens: int  # before interpolation: 150 per 30 s chunk
    audio_tokens_interleaved: int  # after nearest interpolation to a multiple of n_frames
    audio_tokens_per_frame: int
    back_audio_tokens: int  # audio tokens after the last frame (clips under 3 s)
    frames: list[FrameSpan] = field(default_factory=list)

    @property
    def length(self) -> int:
        """Tokens in the AV block, i.e. what the single placeholder expands to."""
        return self.n_frames * (VIDEO_TOKENS_PER_FRAME + self.audio_tokens_per_frame) + self.back_audio_tokens


def av_layout(n_frames: int, audio_tokens: int, real_time: float) -> AVLayout:
    if n_frames < 1:
        raise ValueError("a clip needs at least one frame")
    front = min(round(real_time * WHISPER_FRAMES_PER_SECOND), audio_tokens)
    back = audio_tokens - front
    interleaved = front + (n_frames - front % n_frames) % n_frames
    per_frame = interleaved // n_frames
    frames, pos = [], 0
    for _ in range(n_frames):
        video = (pos, pos + VIDEO_TOKENS_PER_FRAME)
        audio = (video[1], video[1] + per_frame)
        frames.append(FrameSpan(video=video, audio=audio))
        pos = audio[1]
    return AVLayout(n_frames, audio_tokens, interleaved, per_frame, back, frames)
