"""Lay local folders out as a Hugging Face hub cache, as ``snapshot_download`` leaves one:
``models--ORG--NAME/blobs/<sha256>``, ``snapshots/<commit>/<file>`` (links to the blobs) and
``refs/<branch>`` holding the commit."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path


def add_snapshot(cache: Path, repo_id: str, folder: Path, commit: str, ref: str | None = "main") -> Path:
    """Put every file of ``folder`` into ``cache`` as ``repo_id`` at ``commit``; point ``ref`` at it."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        blob = repo / "blobs" / digest
        if not blob.exists():
            blob.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, blob)  # the real-width shards are GBs: no copy where a link will do
            except OSError:
                shutil.copyfile(path, blob)
        target = snapshot / path.relative_to(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(os.path.relpath(blob, target.parent))
    if ref:
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return snapshot
