"""Files from the Hugging Face hub: the checkpoint and the encoders' configs, by hub id.

Online, ``snapshot_download`` fetches what is missing; offline (``HF_HUB_OFFLINE=1``) it answers
from the cache (``HF_HUB_CACHE``, laid out as ``models--ORG--NAME/{refs,snapshots,blobs}``),
which is how a Space runs once the files are there. Every failure is one line saying what to do.
"""

from __future__ import annotations

from pathlib import Path

from inference.errors import UserError


class CheckpointError(UserError):
    """The checkpoint cannot be found, read, or does not hold exactly the expected weights."""


def looks_like_hub_id(name: str) -> bool:
    """``owner/name``: one slash, no path-like start (a missing local folder is not a hub id)."""
    return name.count("/") == 1 and not name.startswith((".", "/", "~")) and all(name.split("/"))


def hub_snapshot(repo_id: str, revision: str | None, patterns: list[str], what: str) -> Path:
    """``snapshot_download`` with every failure turned into one line saying what to do. Offline
    (``HF_HUB_OFFLINE=1``) it answers from the cache (``HF_HUB_CACHE``), as a Space does once
    the files are downloaded."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        IncompleteSnapshotError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    rev = revision or "main"
    local_hint = "pass --checkpoint with a local folder" if what == "checkpoint" else "pass a local folder"
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns))
    except RevisionNotFoundError as exc:
        raise CheckpointError(f"{what} {repo_id} has no revision {rev!r}; check --revision") from exc
    except GatedRepoError as exc:
        raise CheckpointError(f"{what} {repo_id} is gated: accept its terms and set HF_TOKEN") from exc
    except RepositoryNotFoundError as exc:
        raise CheckpointError(f"{what} {repo_id} is not on the hub (or is private: set HF_TOKEN)") from exc
    except IncompleteSnapshotError as exc:  # an interrupted download, offline
        raise CheckpointError(
            f"the hub cache holds only part of {what} {repo_id} revision {rev!r}; download it again"
        ) from exc
    except LocalEntryNotFoundError as exc:  # offline, and the cache lacks this repo or revision
        raise CheckpointError(
            f"{what} {repo_id} revision {rev!r} is not in the hub cache and the hub is unreachable "
            f"(offline); download it first or {local_hint}"
        ) from exc
    except Exception as exc:  # network, permissions, disk: all the same to the user
        raise CheckpointError(
            f"cannot download {what} {repo_id!r} from the hub ({type(exc).__name__}); "
            f"{local_hint}, or run without --checkpoint for the tiny demo model"
        ) from exc
