"""The batch output folder as a ledger: append-only shards, the lock, the merged files.

    OUT/run.json                      settings of the run (a resume must pass the same ones)
    OUT/shards/traces-rank{r}.jsonl    Trace JSON lines, appended only by process r
    OUT/shards/failures-rank{r}.jsonl  one line per failed item: id, clip, reason
    OUT/shards/report-rank{r}.json    process r's figures for the last run
    OUT/traces.jsonl                  every finished trace in manifest order (for the store)
    OUT/failures.jsonl                the items that are failed now (latest reason each)
    OUT/summary.json                  the last run's summary

An item is finished once its whole line is in a shard: one ``write`` of the line on an
O_APPEND descriptor, then fsync. A process killed inside that write can leave a tail without
its newline; ``Ledger.repair`` cuts it off before the next run appends (process 0, under the
folder's lock, while nobody writes), and readers never count a line without its newline.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from inference.batch.items import (
    TRACE_ID_PREFIX,
    BatchError,
    BatchSettings,
    WorkItem,
    canonical_json,
)


def append_line(fd: int, record: dict[str, Any]) -> None:
    """One JSON line onto an O_APPEND descriptor in one write, then fsync: a reader sees the
    line whole or not at all, unless the process dies inside the write, which leaves a tail
    without its newline that ``Ledger.repair`` cuts off before the next run appends."""
    data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    view = memoryview(data)
    while view:  # a regular file takes it in one write; a short write still completes the line
        written = os.write(fd, view)
        view = view[written:]
    os.fsync(fd)


def write_atomic(path: Path, data: str | bytes) -> None:
    """Whole file or the old one: a temp file beside it, fsynced, renamed into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def iter_lines(path: Path, start: int = 0) -> Iterator[tuple[int, bytes]]:
    """(offset, line without newline) for every complete line from ``start``; an unfinished
    last line (no newline) is not yielded."""
    with open(path, "rb") as fh:
        fh.seek(start)
        offset = start
        for line in fh:
            if not line.endswith(b"\n"):
                return
            yield offset, line[:-1]
            offset += len(line)


@dataclass
class LedgerState:
    """What the shards say: finished items (where their line is) and failures."""

    done: dict[str, tuple[Path, int, int]] = field(default_factory=dict)  # item id -> (shard, offset, length)
    failures: dict[str, dict[str, Any]] = field(default_factory=dict)  # item id -> latest failure record
    duplicates: int = 0  # finished lines of an item already finished elsewhere (never written by this tool)
    unreadable: int = 0  # complete lines that are not JSON (a crash of the machine, or an edit)


class Ledger:
    """The output folder: shards, the lock, the merged files (module docstring)."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.shards = self.out / "shards"
        self._lock_fd: int | None = None

    def trace_shard(self, rank: int) -> Path:
        return self.shards / f"traces-rank{rank}.jsonl"

    def failure_shard(self, rank: int) -> Path:
        return self.shards / f"failures-rank{rank}.jsonl"

    def report_path(self, rank: int) -> Path:
        return self.shards / f"report-rank{rank}.json"

    def trace_shards(self) -> list[Path]:
        return sorted(self.shards.glob("traces-rank*.jsonl"), key=_rank_of)

    def failure_shards(self) -> list[Path]:
        return sorted(self.shards.glob("failures-rank*.jsonl"), key=_rank_of)

    # -- run.json and the lock (process 0 only)

    def lock(self) -> None:
        """Hold OUT/.lock for this run: a second run on the same folder would break exactly-once."""
        import fcntl

        self.shards.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.out / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise BatchError(
                f"another batch run is writing to {self.out}; wait for it to finish or pass another --out"
            ) from None
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def check_settings(self, settings: BatchSettings, run_id: str, manifest: Path) -> None:
        """Record the settings, or refuse a resume that would make different traces."""
        path = self.out / "run.json"
        wanted = asdict(settings)
        if path.exists():
            try:
                stored = json.loads(path.read_text(encoding="utf-8"))["settings"]
            except (OSError, ValueError, KeyError, TypeError):
                raise BatchError(
                    f"{path} cannot be read as a batch run's settings; pass another --out"
                ) from None
            stored_norm = json.loads(canonical_json(stored))
            wanted_norm = json.loads(canonical_json(wanted))
            if stored_norm != wanted_norm:
                diff = ", ".join(
                    f"{k} {stored_norm.get(k)!r} -> {wanted_norm.get(k)!r}"
                    for k in sorted(set(stored_norm) | set(wanted_norm))
                    if stored_norm.get(k) != wanted_norm.get(k)
                )
                raise BatchError(
                    f"{self.out} holds a batch run with other settings ({diff}); "
                    "pass the same flags to resume it, or another --out"
                )
        record = {
            "settings": wanted,
            "fingerprint": settings.fingerprint(),
            "run_id": run_id,
            "manifest": str(manifest.absolute()),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        write_atomic(path, json.dumps(record, indent=2) + "\n")

    def run_id(self) -> str | None:
        try:
            return json.loads((self.out / "run.json").read_text(encoding="utf-8")).get("run_id")
        except (OSError, json.JSONDecodeError):
            return None

    # -- shards

    def repair(self) -> int:
        """Cut the unfinished last line (no newline) off every shard; returns the bytes cut.
        Only while no process writes (process 0 under the lock, before handing out work)."""
        cut = 0
        for path in [*self.trace_shards(), *self.failure_shards()]:
            size = path.stat().st_size
            if size == 0:
                continue
            with open(path, "rb+") as fh:
                keep = size
                while keep > 0:  # back to the last newline, 64 KiB at a time
                    step = min(keep, 65536)
                    fh.seek(keep - step)
                    chunk = fh.read(step)
                    at = chunk.rfind(b"\n")
                    if at >= 0:
                        keep = keep - step + at + 1
                        break
                    keep -= step
                if keep != size:
                    fh.truncate(keep)
                    os.fsync(fh.fileno())
                    cut += size - keep
        return cut

    def scan(self) -> LedgerState:
        state = LedgerState()
        for path in self.trace_shards():
            for offset, line in iter_lines(path):
                if not line.strip():
                    continue
                try:
                    trace_id = json.loads(line).get("id", "")
                except (json.JSONDecodeError, AttributeError):
                    state.unreadable += 1
                    continue
                if not isinstance(trace_id, str) or not trace_id.startswith(TRACE_ID_PREFIX):
                    state.unreadable += 1
                    continue
                key = trace_id[len(TRACE_ID_PREFIX) :]
                if key in state.done:
                    state.duplicates += 1
                    continue
                state.done[key] = (path, offset, len(line))
        for path in self.failure_shards():
            for _, line in iter_lines(path):
                try:
                    record = json.loads(line)
                    state.failures[record["item_id"]] = record
                except (json.JSONDecodeError, KeyError, TypeError):
                    state.unreadable += 1
        return state

    def read_line(self, where: tuple[Path, int, int]) -> bytes:
        path, offset, length = where
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read(length)


def _rank_of(path: Path) -> int:
    digits = "".join(ch for ch in path.stem.rsplit("rank", 1)[-1] if ch.isdigit())
    return int(digits or 0)


class LedgerWatcher:
    """Counts lines appended to the shards since it was made (the overall progress), reading
    only the new bytes of each file."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.offsets: dict[Path, int] = {}
        self.count = 0
        self._baseline = True
        self.poll()
        self.count, self._baseline = 0, False

    def poll(self) -> int:
        for path in [*self.ledger.trace_shards(), *self.ledger.failure_shards()]:
            start = self.offsets.get(path, 0)
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            if size <= start:
                continue
            end = start
            for offset, line in iter_lines(path, start):
                end = offset + len(line) + 1
                self.count += 1
            self.offsets[path] = end
        return self.count


def plan_run(
    ledger: Ledger,
    settings: BatchSettings,
    items: Sequence[WorkItem],
    manifest: Path,
    retry_failures: bool = True,
) -> dict[str, Any]:
    """Process 0, before any work: lock the folder, check the settings, cut unfinished lines,
    and list the items still to make (indices into ``items``)."""
    ledger.lock()
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(4)
    ledger.check_settings(settings, run_id, manifest)
    cut = ledger.repair()
    found = ledger.scan()
    pending, done_before, not_retried = [], 0, 0
    for item in items:
        if item.item_id in found.done:
            done_before += 1
        elif item.item_id in found.failures and not retry_failures:
            not_retried += 1
        else:
            pending.append(item.index)
    return {
        "run_id": run_id,
        "pending": pending,
        "done_before": done_before,
        "not_retried": not_retried,
        "repaired_bytes": cut,
    }


def summarize(
    ledger: Ledger,
    items: Sequence[WorkItem],
    plan: dict[str, Any],
    reports: Sequence[dict[str, Any]],
    duplicates_in_manifest: int,
    wall_s: float,
) -> dict[str, Any]:
    """Read the ledger once more, write traces.jsonl, failures.jsonl and summary.json."""
    found = ledger.scan()
    failures = []
    lines = []
    known = set()
    for item in items:
        known.add(item.item_id)
        if item.item_id in found.done:
            lines.append(ledger.read_line(found.done[item.item_id]))
        elif item.item_id in found.failures:
            failures.append(found.failures[item.item_id])
    # Traces of items no longer in the manifest (an earlier manifest) are kept, after the rest.
    for key, where in found.done.items():
        if key not in known:
            lines.append(ledger.read_line(where))
    write_atomic(ledger.out / "traces.jsonl", b"".join(line + b"\n" for line in lines))
    write_atomic(
        ledger.out / "failures.jsonl", "".join(json.dumps(f, ensure_ascii=False) + "\n" for f in failures)
    )
    done_now = sum(r["done"] for r in reports)
    failed_now = sum(r["failed"] for r in reports)
    finished = sum(1 for item in items if item.item_id in found.done)
    summary = {
        "run_id": plan["run_id"],
        "out": str(ledger.out),
        "processes": len(reports),
        "items": len(items),
        "done_now": done_now,
        "already_done": plan["done_before"],
        "failed_now": failed_now,
        "not_retried": plan["not_retried"],
        "finished": finished,
        "failed": len(failures),
        "missing": len(items) - finished - len(failures),
        "failures": [
            {k: f[k] for k in ("item_id", "line", "video", "sample", "reason") if k in f} for f in failures
        ],
        "tokens": sum(r["tokens"] for r in reports),
        "wall_s": round(wall_s, 3),
        "items_per_minute": round(60.0 * (done_now + failed_now) / wall_s, 3) if wall_s > 0 else None,
        "duplicate_manifest_entries": duplicates_in_manifest,
        "duplicate_lines_ignored": found.duplicates,
        "unreadable_lines_ignored": found.unreadable,
        "repaired_bytes": plan["repaired_bytes"],
        "traces": str(ledger.out / "traces.jsonl"),
        "traces_in_file": len(lines),
        "ranks": list(reports),
    }
    write_atomic(ledger.out / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return summary
