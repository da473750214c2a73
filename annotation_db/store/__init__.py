"""The annotation store: verbs on a ``Store`` over one SQLite file.

    store = Store.open("annotations.db")          # creates or migrates the database
    store.import_traces("traces.jsonl")           # Trace JSON lines from inference / batch runs
    stored = store.get_trace(trace_id)            # a StoredTrace: the Trace and its row ids
    store.set_label("alice", trace_id, 2, "reject", error_type="visual_misperception")
    store.undo_label("alice", trace_id, 2)        # back to alice's previous label of step 2
    store.export("pdpo", "pairs.jsonl")

One module per concern, one ``Store`` with every verb:

- ``connection``: thread-local connections, the write lock, read-only mode and disk faults;
- ``tables``: one description per entity (Trace JSON key <-> column) for insert and select;
- ``traces``: importing Traces and reading them back (``StoredTrace``);
- ``labels``: labels and their history (set, clear, undo, edit);
- ``alternatives``: alternatives, preferences and expected correctness;
- ``queue``: the queue, progress, exports and statistics.

Errors users can cause are ``annotation_db.errors.StoreError`` subclasses with one-line
messages; a ``ValueError`` means a programming error (e.g. an unknown queue order).
"""

from __future__ import annotations

from annotation_db.store.alternatives import CHOICES, AlternativeVerbs
from annotation_db.store.connection import Connection, StoreConfig, disk_error, parse_since
from annotation_db.store.labels import MAX_COMMENT_CHARS, LabelVerbs
from annotation_db.store.queue import QUEUE_ORDERS, QueueVerbs
from annotation_db.store.review import ReviewVerbs
from annotation_db.store.traces import StoredTrace, TraceVerbs


class Store(Connection, TraceVerbs, LabelVerbs, AlternativeVerbs, QueueVerbs, ReviewVerbs):
    """One annotation database. Create with ``Store.open(path)``; close with ``close()``."""


__all__ = [
    "CHOICES",
    "MAX_COMMENT_CHARS",
    "QUEUE_ORDERS",
    "Store",
    "StoreConfig",
    "StoredTrace",
    "disk_error",
    "parse_since",
]
