"""The files ``import`` reads: Trace JSONL, one Trace JSON document, or a folder of them.

- A **file** is one JSON document when the whole text parses as one (a pretty-printed Trace, as
  ``python -m inference run --out`` writes it, or a one-line file); a JSON list of traces is
  taken too. Otherwise it is JSONL: one trace per line, blank lines ignored, and an error names
  the line.
- A **folder**: every ``*.json`` and ``*.jsonl`` file directly in it, by name. A batch output
  folder (``python -m inference batch --out``: it holds ``run.json`` and ``traces.jsonl``)
  imports its ``traces.jsonl`` only, since its other files are the batch's own records.

Everything is read before anything is stored, so the import stays all or nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from annotation_db.errors import ImportFormatError

TRACE_SUFFIXES = (".json", ".jsonl")


def read_traces(path: str | Path) -> list[tuple[str, Any]]:
    """``(where, parsed JSON)`` for every trace in ``path`` (a file or a folder)."""
    path = Path(path)
    if path.is_dir():
        items = []
        for file in trace_files(path):
            items.extend(_read_file(file, f"{path.name}/{file.name}"))
        return items
    return _read_file(path, path.name)


def trace_files(folder: Path) -> list[Path]:
    """The files a folder import reads (module doc), in the order they are imported."""
    if (folder / "run.json").is_file() and (folder / "traces.jsonl").is_file():
        return [folder / "traces.jsonl"]
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in TRACE_SUFFIXES)
    if not files:
        raise ImportFormatError(
            f"{folder} holds no .json or .jsonl files; pass a trace file or another folder"
        )
    return files


def _read_file(path: Path, name: str) -> list[tuple[str, Any]]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ImportFormatError(f"cannot read {path}: {exc.strerror}; check the path") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ImportFormatError(f"{name} line {line}: not UTF-8 text (nothing was imported)") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        if _pretty_document(text):
            raise ImportFormatError(
                f"{name} line {exc.lineno}: not JSON ({exc.msg} at column {exc.colno}); nothing was imported"
            ) from None
        return _read_lines(text, name)  # JSONL: the error names the first bad line
    if isinstance(document, list):
        return [(f"{name} item {i + 1}", item) for i, item in enumerate(document)]
    lines = [n for n, line in enumerate(text.split("\n"), start=1) if line.strip()]
    return [(f"{name} line {lines[0]}" if len(lines) == 1 else name, document)]


def _pretty_document(text: str) -> bool:
    """A pretty-printed JSON document opens with a line holding only ``{`` or ``[``."""
    first = next((line for line in text.split("\n") if line.strip()), "")
    return first.strip() in ("{", "[")


def _read_lines(text: str, name: str) -> list[tuple[str, Any]]:
    items = []
    for n, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            items.append((f"{name} line {n}", json.loads(line)))
        except json.JSONDecodeError as exc:
            raise ImportFormatError(
                f"{name} line {n}: not JSON ({exc.msg} at column {exc.colno}); nothing was imported"
            ) from None
    return items
