"""Each clip's AV block computed once and cached: the encoders and connectors are frozen, so the
block (L, D) is a constant of the clip (its sha256) and of the encoder weights.

In memory: the last ``memory_clips`` blocks (LRU). On disk (optional): one file per clip,
``<dir>/<encoder fingerprint>/<clip sha256>.pt``, written via a temp file + rename, so several
processes (``accelerate launch``) can share the folder. The fingerprint hashes the shapes and a
sample of the values of every non-LLM weight, so blocks of another checkpoint or dtype are
never mixed in. A clip is decoded (``inference.media.load_media``) only when its block is in
neither place, and its file must still hash to the sha256 the pair was labelled on.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import torch

from inference.errors import UserError


class ClipMismatchError(UserError):
    """A pair's clip cannot be found, or is not the file it was labelled on."""


def encoder_fingerprint(model) -> str:
    """16 hex digits over the names, shapes, dtypes and a sample of every non-LLM tensor."""
    digest = hashlib.sha256()
    tensors = dict(model.named_parameters(recurse=False))
    for child_name, child in model.named_children():
        if child_name != "llm":  # the LLM does not make the AV block (and may be 4-bit)
            tensors.update({f"{child_name}.{k}": v for k, v in child.state_dict().items()})
    for name, tensor in sorted(tensors.items()):
        flat = tensor.detach().reshape(-1)
        sample = torch.cat([flat[:32], flat[-32:]]).to("cpu", torch.float32)
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]


def resolve_clip(video_path: str, roots: list[Path]) -> Path | None:
    """An absolute path as it is; a relative one under the first root that has it."""
    path = Path(video_path)
    if path.is_absolute():
        return path if path.is_file() else None
    for root in roots:
        if (root / path).is_file():
            return root / path
    return None


class FeatureCache:
    def __init__(
        self,
        model,
        directory: str | Path | None = None,
        memory_clips: int = 16,
        video_roots: list[Path] | None = None,
        log: Callable[[str], None] = lambda message: None,
    ) -> None:
        self.model = model
        self.fingerprint = encoder_fingerprint(model)
        self.directory = None if directory is None else Path(directory) / self.fingerprint
        # Without a disk cache every block stays in memory (dropping one would mean decoding
        # the clip again).
        self.memory_clips = memory_clips if self.directory is not None else None
        self.video_roots = [Path(r) for r in (video_roots or [Path.cwd()])]
        self.log = log
        self._memory: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.stats = {"memory": 0, "disk": 0, "encoded": 0}

    def _file(self, sha256: str) -> Path | None:
        return None if self.directory is None else self.directory / f"{sha256}.pt"

    def _remember(self, sha256: str, block: torch.Tensor) -> None:
        self._memory[sha256] = block
        self._memory.move_to_end(sha256)
        while self.memory_clips is not None and len(self._memory) > self.memory_clips:
            self._memory.popitem(last=False)

    def has(self, sha256: str) -> bool:
        file = self._file(sha256)
        return sha256 in self._memory or (file is not None and file.exists())

    def get(self, sha256: str, video_path: str) -> torch.Tensor:
        """The clip's AV block (L, D) on the CPU, in the LLM's embedding dtype."""
        if sha256 in self._memory:
            self._memory.move_to_end(sha256)
            self.stats["memory"] += 1
            return self._memory[sha256]
        file = self._file(sha256)
        if file is not None and file.exists():
            block = torch.load(file, map_location="cpu", weights_only=True)["av_block"]
            self.stats["disk"] += 1
        else:
            block = self._encode(sha256, video_path)
            self.stats["encoded"] += 1
            if file is not None:
                self._save(file, sha256, block)
        self._remember(sha256, block)
        return block

    def _encode(self, sha256: str, video_path: str) -> torch.Tensor:
        from inference.media import load_media

        path = resolve_clip(video_path, self.video_roots) if video_path else None
        if path is None:
            where = ", ".join(str(r) for r in self.video_roots)
            raise ClipMismatchError(
                f"clip {video_path or sha256[:12]!r} not found (looked under {where}); pass --video-root"
            )
        media = load_media(path)
        if media.clip.sha256 != sha256:
            raise ClipMismatchError(
                f"{path} has sha256 {media.clip.sha256[:12]}..., not the {sha256[:12]}... it was labelled on; "
                "the file changed since: re-export the pairs or restore the clip"
            )
        self.log(f"encoding {path.name} ({sha256[:12]})")
        encoded = self.model.encode_media(media.pixel_values, media.spectrogram, float(media.real_time))
        return encoded.av_block.detach().to("cpu")

    def _save(self, file: Path, sha256: str, block: torch.Tensor) -> None:
        file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{sha256[:12]}.", suffix=".tmp", dir=file.parent)
        os.close(fd)
        try:
            torch.save({"av_block": block, "sha256": sha256, "fingerprint": self.fingerprint}, tmp)
            os.replace(tmp, file)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def warm(self, clips: dict[str, str]) -> None:
        """Compute (or find) the block of every clip {sha256: video path} before training, so
        a missing clip fails at once and the encoders can be offloaded afterwards."""
        for sha256, path in clips.items():
            if not self.has(sha256):
                self.get(sha256, path)
