"""One description per stored entity (clip, trace, step, alternative): which Trace JSON key goes
to which column and how it is encoded. The import writes rows with it and ``get_trace`` reads
them back with it, so adding a field to a Step is one line here (plus its migration).

A key that has no column of its own (a field newer than this version) is kept in the row's
``extra`` JSON object and comes back as it was.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


def dumps_or_null(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def dumps_object(value: dict[str, Any] | None) -> str:
    # Most of these objects are empty: skip the encoder call (it dominates import time).
    return json.dumps(value, ensure_ascii=False) if value else "{}"


def loads_or_null(text: str | None) -> Any:
    return None if text is None else json.loads(text)


# How a value is kept in its column: (encode, decode).
CODECS: dict[str, tuple[Any, Any]] = {
    "value": (lambda v: v, lambda v: v),
    "json": (dumps_or_null, loads_or_null),  # any JSON value; null stays NULL
    "object": (dumps_object, json.loads),  # a JSON object; null is stored as {}
    "list": (dumps_or_null, lambda v: json.loads(v or "[]")),  # a JSON list; NULL reads as []
    "flag": (lambda v: None if v is None else int(bool(v)), bool),
}


@dataclass(frozen=True)
class Column:
    name: str  # the SQL column
    key: tuple[str, ...]  # where its value sits in the Trace JSON object of the entity
    codec: str = "value"
    default: Any = None  # stored when the key is missing or null

    def encode(self, data: Mapping[str, Any]) -> Any:
        value: Any = data
        for part in self.key:
            value = (value or {}).get(part)
        return CODECS[self.codec][0](self.default if value is None else value)


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]  # the columns that hold Trace JSON fields
    own: tuple[str, ...]  # the store's own columns (ids, order, times), set by the caller
    nested: tuple[str, ...] = ()  # keys held by other tables (a trace's clip and steps)

    @property
    def known(self) -> frozenset[str]:
        """The Trace JSON keys with a place of their own (every other key goes to ``extra``)."""
        return frozenset(c.key[0] for c in self.columns) | set(self.nested)

    @property
    def column_names(self) -> tuple[str, ...]:
        return (*self.own, *(c.name for c in self.columns), "extra")

    def insert_sql(self) -> str:
        names = self.column_names
        return f"INSERT INTO {self.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"

    def select_list(self, alias: str, prefix: str = "") -> str:
        """``alias.column AS prefix+column, ...`` for the Trace JSON columns and ``extra``."""
        names = [c.name for c in self.columns] + ["extra"]
        return ", ".join(f"{alias}.{n} AS {prefix}{n}" for n in names)

    def row(self, data: Mapping[str, Any], **own: Any) -> tuple[Any, ...]:
        """The values of one insert (``own``: the store's own columns, by name)."""
        extra = dumps_object({k: v for k, v in data.items() if k not in self.known})
        return (*(own[n] for n in self.own), *(c.encode(data) for c in self.columns), extra)

    def decode(self, row: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
        """The Trace JSON object of one selected row (selected with ``select_list``)."""
        out: dict[str, Any] = {}
        for column in self.columns:
            target = out
            for part in column.key[:-1]:
                target = target.setdefault(part, {})
            target[column.key[-1]] = CODECS[column.codec][1](row[prefix + column.name])
        out.update(json.loads(row[prefix + "extra"]))
        return out


CLIPS = Table(
    "clips",
    (
        Column("sha256", ("sha256",)),
        Column("name", ("name",), default=""),
        Column("path", ("path",), default=""),
        Column("duration_s", ("duration_s",)),
        Column("fps", ("fps",)),
        Column("width", ("width",)),
        Column("height", ("height",)),
        Column("has_audio", ("has_audio",), "flag"),
        Column("frame_times_s", ("frame_times_s",), "list"),
    ),
    own=("created_at",),
)
TRACES = Table(
    "traces",
    (
        Column("schema_version", ("schema_version",)),
        Column("source", ("source",), default="live"),
        Column("clip_sha256", ("clip", "sha256")),
        Column("question", ("question",)),
        Column("options", ("options",), "json"),
        Column("reference_answer", ("reference_answer",)),
        Column("prompt_kind", ("prompt_kind",), default="reasoning"),
        Column("prompt", ("prompt",), default=""),
        Column("model", ("model",), "object"),
        Column("decoding", ("decoding",), "object"),
        Column("scoring", ("scoring",), "json"),
        Column("answer_text", ("answer", "text"), default=""),
        Column("answer_choice", ("answer", "choice")),
        Column("timings", ("timings",), "object"),
    ),
    own=("id", "seq", "identity_sha256", "imported_at", "created_at"),
    nested=("id", "created_at", "steps", "alternatives"),
)
STEPS = Table(
    "steps",
    (
        Column("idx", ("index",)),
        Column("text", ("text",)),
        Column("token_start", ("token_start",)),
        Column("token_end", ("token_end",)),
        Column("score", ("score",)),
        Column("token_kl", ("token_kl",), "json"),
        Column("top_t", ("top_t",), "flag", default=False),
        Column("scores", ("scores",), "object"),
        Column("token_kls", ("token_kls",), "object"),
        Column("expected_correctness", ("expected_correctness",)),
    ),
    own=("id", "trace_id"),
)
ALTERNATIVES = Table(
    "alternatives",
    (
        Column("text", ("text",)),
        Column("source", ("source",), default="model"),
        Column("settings", ("settings",), "object"),
        Column("expected_correctness", ("expected_correctness",)),
    ),
    own=("id", "step_id", "created_by", "created_at"),
    nested=("step_index",),  # the row's step_id says which step
)

# A clip seen again keeps what is known and fills in what was missing (published reasoning
# carries no media facts; a later live run does).
CLIP_UPSERT = (
    CLIPS.insert_sql()
    + """ ON CONFLICT (sha256) DO UPDATE SET
    name = CASE WHEN clips.name = '' THEN excluded.name ELSE clips.name END,
    path = CASE WHEN clips.path = '' THEN excluded.path ELSE clips.path END,
    duration_s = coalesce(nullif(clips.duration_s, 0), excluded.duration_s),
    fps = coalesce(nullif(clips.fps, 0), excluded.fps),
    width = coalesce(nullif(clips.width, 0), excluded.width),
    height = coalesce(nullif(clips.height, 0), excluded.height),
    has_audio = coalesce(clips.has_audio, excluded.has_audio),
    frame_times_s = CASE WHEN clips.frame_times_s IS NULL OR clips.frame_times_s = '[]'
                    THEN excluded.frame_times_s ELSE clips.frame_times_s END,
    extra = CASE WHEN clips.extra = '{}' THEN excluded.extra ELSE clips.extra END"""
)
