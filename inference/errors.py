"""Errors a user can cause. Each carries a one-line message that says what to do.

The UI shows ``str(exc)``; the CLI prints it and exits with code 2; logs keep the detail.
"""


class UserError(Exception):
    """Base of every error caused by what a user handed in (a file, a request, a setting)."""


# --- media (inference.media) -----------------------------------------------------------------
# Each names the file and says what to do. They are raised before any heavy work where possible
# (size and duration come from the file system and the container header).


class MediaError(UserError):
    """A clip or audio file cannot be used as the model's input."""

    def __init__(self, message: str):
        # The message names the file; a name may hold a newline or a tab (legal on Linux), and
        # the message must stay one line: such characters are shown as escapes.
        super().__init__("".join(c if c.isprintable() else ascii(c)[1:-1] for c in message))


class MediaNotFoundError(MediaError):
    def __init__(self, name: str):
        super().__init__(f"{name}: no such file; check the path and try again")


class EmptyFileError(MediaError):
    def __init__(self, name: str):
        super().__init__(f"{name} is empty (0 bytes); upload the clip again")


class FileTooLargeError(MediaError):
    def __init__(self, name: str, size_mb: float, max_mb: float):
        super().__init__(
            f"{name} is {size_mb:.3g} MB, over the {max_mb:g} MB limit; "
            "upload a shorter or more compressed clip"
        )


class NotMediaError(MediaError):
    def __init__(self, name: str):
        super().__init__(
            f"{name} is not a video file that can be read; upload a video such as MP4, MOV, MKV or WEBM"
        )


class ImageNotVideoError(MediaError):
    def __init__(self, name: str):
        super().__init__(f"{name} is a still image, not a video; upload a video clip")


class AudioOnlyError(MediaError):
    def __init__(self, name: str):
        super().__init__(
            f"{name} has audio but no video; upload a video clip (an audio file can go with a clip "
            "as its separate audio track)"
        )


class CorruptMediaError(MediaError):
    def __init__(self, name: str, detail: str = "truncated or corrupt"):
        super().__init__(
            f"{name} is {detail}; re-export or re-encode the clip (e.g. to H.264 MP4) and try again"
        )


class NoVideoStreamError(MediaError):
    def __init__(self, name: str, codec: str = ""):
        what = f" (codec {codec!r})" if codec else ""
        super().__init__(
            f"{name} has no video stream that can be decoded{what}; re-encode the clip to H.264 MP4"
        )


class FrameTooLargeError(MediaError):
    def __init__(self, name: str, width: int, height: int, max_pixels: int):
        super().__init__(
            f"{name} has {width}x{height} frames, over the {max_pixels / 1e6:.3g}-megapixel limit; "
            "scale it down (e.g. to 4K) and re-encode it"
        )


class ClipTooLongError(MediaError):
    def __init__(self, name: str, duration_s: float, max_s: float):
        super().__init__(
            f"{name} lasts {_clock(duration_s)}, over the {_clock(max_s)} limit; cut it shorter "
            "(the model sees at most 60 frames of any clip)"
        )


class AudioFileError(MediaError):
    def __init__(self, name: str, detail: str = "not an audio file that can be read"):
        super().__init__(
            f"{name} is {detail}; give a WAV (16 kHz mono, as the official data) or leave it out"
        )


def _clock(seconds: float) -> str:
    """``754.2`` -> ``"12:34"`` (minutes:seconds, rounded up so a limit never reads as met)."""
    whole = int(-(-seconds // 1))
    return f"{whole // 60}:{whole % 60:02d}"
