"""Traces in and out: importing Trace JSON (files, live runs, published reasoning) and reading a
stored trace back as a ``StoredTrace`` (the Trace plus the row ids the label verbs take)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from annotation_db.errors import ImportFormatError, TraceConflictError, UnknownTraceError
from annotation_db.store.tables import ALTERNATIVES, CLIP_UPSERT, CLIPS, STEPS, TRACES
from annotation_db.trace_files import read_traces
from annotation_db.tracejson import identity_hash, normalise_trace, published_trace
from studio_trace import Trace, TraceFormatError, validate_trace_dict


@dataclass(frozen=True)
class StoredTrace:
    """A stored trace: the Trace, and the store's row ids of its steps and alternatives (what
    ``set_label``, ``record_preference`` and the UI's alternative lists name them by)."""

    trace: Trace
    step_ids: tuple[int, ...]  # row id of trace.steps[k]
    alternative_ids: tuple[int, ...]  # row id of trace.alternatives[j]
    alternative_authors: tuple[str | None, ...]  # who wrote trace.alternatives[j] (None: imported)
    # The Trace JSON exactly as imported, fields this version does not know included.
    json: dict[str, Any]

    @property
    def id(self) -> str:
        return self.trace.id

    def to_dict(self) -> dict[str, Any]:
        """The Trace JSON as it was stored (a copy; unknown fields kept)."""
        return copy.deepcopy(self.json)


class TraceVerbs:
    """Import and read traces (mixed into ``Store``)."""

    def import_traces(self, path: str | Path) -> dict[str, int]:
        """Import Trace JSON: a JSONL file (one trace per line, blank lines ignored), one
        Trace JSON document (pretty-printed or not) or a folder of them (see
        ``annotation_db.trace_files``).

        All or nothing: a malformed line raises ImportFormatError naming the line and nothing
        is imported. Idempotent: a trace whose id is stored with the same content (clip,
        question, prompt, step and alternative texts) is skipped; with other content it raises
        TraceConflictError. Returns ``{"added": n, "skipped": n}``.
        """
        return self.add_traces(read_traces(path))

    def add_traces(
        self, traces: Iterable[Trace | dict[str, Any] | tuple[str, Trace | dict[str, Any]]]
    ) -> dict[str, int]:
        """Store Traces (or their JSON dicts) in one transaction; same rules as
        ``import_traces``. Items may be ``(where, trace)`` to name them in errors."""
        items = []
        for i, item in enumerate(traces):
            where, data = item if isinstance(item, tuple) else (f"trace {i}", item)
            if isinstance(data, Trace):
                data = data.to_dict()
            try:
                validate_trace_dict(data)
            except TraceFormatError as exc:
                raise ImportFormatError(f"{where}: {exc} (nothing was imported)") from None
            items.append((where, normalise_trace(data)))
        return self._insert_traces(items)

    def add_trace(self, trace: Trace | dict[str, Any]) -> dict[str, int]:
        """Store one Trace (idempotent, see ``import_traces``)."""
        return self.add_traces([trace])

    def import_published(self, manifest: str | Path) -> dict[str, int]:
        """Import published reasoning from a ``clips/manifest.jsonl``-style file.

        Each entry with ``published_reasoning`` becomes a Trace (source "imported", no scores);
        its clip file, named relative to the manifest, is hashed for the clip's identity.
        Entries without reasoning are counted in ``"without_reasoning"``. All or nothing and
        idempotent like ``import_traces``.
        """
        manifest = Path(manifest)
        now = self._now()
        items = []
        without = 0
        for where, line in _lines(manifest):
            entry = _parse_json(where, line)
            try:
                trace = published_trace(entry, manifest.parent, now)
            except TraceFormatError as exc:
                raise ImportFormatError(f"{where}: {exc} (nothing was imported)") from None
            if trace is None:
                without += 1
            else:
                items.append((where, trace))
        result = self.add_traces(items)
        return {**result, "without_reasoning": without}

    def _insert_traces(self, items: list[tuple[str, dict[str, Any]]]) -> dict[str, int]:
        now = self._now()
        with self._write() as db:
            stored = _stored_identities(db, [data["id"] for _, data in items])
            seq = db.execute("SELECT coalesce(max(seq), 0) FROM traces").fetchone()[0]
            step_id = db.execute("SELECT coalesce(max(id), 0) FROM steps").fetchone()[0]
            alt_id = db.execute("SELECT coalesce(max(id), 0) FROM alternatives").fetchone()[0]
            clips, traces, steps, alternatives = {}, [], [], []
            skipped = 0
            for where, data in items:
                identity = identity_hash(data)
                if data["id"] in stored:
                    if stored[data["id"]] != identity:
                        raise TraceConflictError(
                            f"{where}: trace {data['id']!r} is already stored with other content; "
                            "give the new trace another id (nothing was imported)"
                        )
                    skipped += 1
                    continue
                stored[data["id"]] = identity
                seq += 1
                clips.setdefault(data["clip"]["sha256"], CLIPS.row(data["clip"], created_at=now))
                traces.append(
                    TRACES.row(
                        data,
                        id=data["id"],
                        seq=seq,
                        identity_sha256=identity,
                        imported_at=now,
                        created_at=data.get("created_at") or now,
                    )
                )
                first_step = step_id + 1
                for step in data["steps"]:
                    step_id += 1
                    steps.append(STEPS.row(step, id=step_id, trace_id=data["id"]))
                for alt in data.get("alternatives", []):
                    alt_id += 1
                    step_of = first_step + alt["step_index"]
                    alternatives.append(
                        ALTERNATIVES.row(alt, id=alt_id, step_id=step_of, created_by=None, created_at=now)
                    )
            db.conn.executemany(CLIP_UPSERT, list(clips.values()))
            db.conn.executemany(TRACES.insert_sql(), traces)
            db.conn.executemany(STEPS.insert_sql(), steps)
            db.conn.executemany(ALTERNATIVES.insert_sql(), alternatives)
        return {"added": len(traces), "skipped": skipped}

    def get_trace(self, trace_id: str) -> StoredTrace:
        """The stored trace (UnknownTraceError if there is none), human alternatives included."""
        with self._read() as db:
            data, step_ids, alternatives = _read_trace(db, trace_id)
        return StoredTrace(
            trace=Trace.from_dict(data),
            step_ids=tuple(step_ids),
            alternative_ids=tuple(a["id"] for a in alternatives),
            alternative_authors=tuple(a["created_by"] for a in alternatives),
            json=data,
        )


def _read_trace(db: Database, trace_id: str) -> tuple[dict[str, Any], list[int], list[dict[str, Any]]]:
    """(Trace JSON, step row ids, [{id, created_by}] per alternative) of one stored trace."""
    rows = list(
        db.query(
            f"SELECT t.id, t.created_at, {TRACES.select_list('t')}, {CLIPS.select_list('c', 'c_')} "
            "FROM traces t JOIN clips c ON c.sha256 = t.clip_sha256 WHERE t.id = ?",
            [trace_id],
        )
    )
    if not rows:
        raise UnknownTraceError(f"no trace {trace_id!r} is stored; import it or pick one from the queue")
    row = rows[0]
    data = TRACES.decode(row) | {"id": row["id"], "created_at": row["created_at"]}
    data["clip"] = CLIPS.decode(row, "c_")
    steps = list(
        db.query(
            f"SELECT s.id, {STEPS.select_list('s')} FROM steps s WHERE s.trace_id = ? ORDER BY s.idx",
            [trace_id],
        )
    )
    data["steps"] = [STEPS.decode(s) for s in steps]
    alts = list(
        db.query(
            f"SELECT a.id, a.created_by, s.idx AS step_index, {ALTERNATIVES.select_list('a')} "
            "FROM alternatives a JOIN steps s ON s.id = a.step_id WHERE s.trace_id = ? ORDER BY a.id",
            [trace_id],
        )
    )
    data["alternatives"] = [{"step_index": a["step_index"], **ALTERNATIVES.decode(a)} for a in alts]
    return data, [s["id"] for s in steps], alts


def _stored_identities(db: Database, ids: list[str]) -> dict[str, str]:
    """trace id -> identity hash of those of ``ids`` already stored."""
    stored: dict[str, str] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        rows = db.execute(f"SELECT id, identity_sha256 FROM traces WHERE id IN ({marks})", chunk)
        stored.update(dict(rows.fetchall()))
    return stored


def _lines(path: Path) -> Iterator[tuple[str, str]]:
    """(``"NAME line N"``, text) for every non-blank line; ImportFormatError if unreadable."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ImportFormatError(f"cannot read {path}: {exc.strerror}; check the path") from None
    for n, line in enumerate(raw.split(b"\n"), start=1):
        where = f"{path.name} line {n}"
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise ImportFormatError(f"{where}: not UTF-8 text (nothing was imported)") from None
        if text.strip():
            yield where, text


def _parse_json(where: str, line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise ImportFormatError(
            f"{where}: not JSON ({exc.msg} at column {exc.colno}); nothing was imported"
        ) from None
