"""The annotation store: verbs on a ``Store`` over one SQLite file.

    store = Store.open("annotations.db")          # creates or migrates the database
    store.import_traces("traces.jsonl")           # Trace JSON lines from inference / batch runs
    store.set_label("alice", trace_id, 2, "reject", error_type="visual_misperception")
    store.undo_label("alice", trace_id, 2)        # back to alice's previous label of step 2
    store.export("pdpo", "pairs.jsonl")

Concurrency. Every thread gets its own SQLite connection (``Store.db`` is thread-local), so one
Store may be shared by all the threads of a web server: the UI opens it once at start and
calls its methods from any handler. Separate processes open their own Store on the same file.
The database is in WAL mode (readers never block the writer). Every write runs in one
transaction that takes the write lock up front (``BEGIN IMMEDIATE``, with ``db.atomic()``
inside): a deferred transaction that reads before it writes can fail at once with "database
is locked" in WAL mode instead of waiting. Writers queue for their turn on a thread lock and
an advisory file lock (``<db>-writer.lock``) rather than on SQLite's sleeping busy handler,
which keeps the wait close to the time the writers ahead take; every wait is bounded by the
busy timeout (then ``StoreBusyError``).

Labels. One label per (item, annotator), where an item is a step of a trace or an alternative
at a step. Every change appends a row to ``label_events`` (append-only, enforced by triggers);
``undo_label`` restores the state before the annotator's last change, repeatedly. Every
function that changes a label takes the acting annotator and touches only that annotator's
labels; ``LabelOwnershipError`` where a label id of someone else is passed.

Faults. A write commits in full or not at all (one transaction), and a committed write
survives a crash of the program (see ``StoreConfig.synchronous``). When the disk refuses a write
(full, read-only, failing) the transaction is rolled back and the write raises a
``StoreIOError`` subclass (``StoreFullError``, ``StoreReadOnlyError``) naming the file and what
to do; the Store stays usable and the next write succeeds once the disk is fixed. A database
that cannot be written when it is opened (a read-only file, folder or disk) is opened for
reading only: every read works, every write raises ``StoreReadOnlyError`` and ``read_only``
says why. tests/store/test_faults.py and tests/hardening/test_faults.py check all this.

Errors users can cause are ``annotation_db.errors.StoreError`` subclasses with one-line
messages; a ``ValueError`` means a programming error (e.g. an unknown queue order).
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database

try:
    import fcntl
except ImportError:  # not POSIX: writers rely on SQLite's busy timeout alone
    fcntl = None

from annotation_db.errors import (
    DatabaseOpenError,
    DatabaseTooNewError,
    ExportFormatError,
    ImportFormatError,
    InvalidAlternativeError,
    InvalidAnnotatorError,
    InvalidLabelError,
    LabelOwnershipError,
    NothingToUndoError,
    StoreBusyError,
    StoreFullError,
    StoreIOError,
    StoreReadOnlyError,
    TraceConflictError,
    UnknownAlternativeError,
    UnknownLabelError,
    UnknownStepError,
    UnknownTraceError,
)
from annotation_db.migrations import ERROR_TYPES, VERDICTS, migrations
from annotation_db.store_review import ReviewVerbs  # roles, review, resolution, analysis (issue 16)
from annotation_db.tracejson import TraceFieldError, check_trace, identity_hash, published_trace

CHOICES = ("alternative", "original")  # what record_preference can prefer
QUEUE_ORDERS = ("max_score", "oldest", "newest", "fewest_annotators")
MAX_COMMENT_CHARS = 10_000  # a paragraph or two; longer text is almost surely a paste mistake
MAX_ANNOTATOR_CHARS = 100
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_READ_ONLY_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM}
_NEARLY_FULL_BYTES = 1 << 20  # an I/O error with less free space than this is a full disk


@dataclass(frozen=True)
class StoreConfig:
    """How a Store talks to SQLite."""

    # Writers wait this long for the write lock instead of failing. A label write holds it for
    # about a millisecond, so only a stuck process ever makes anyone wait this long.
    busy_timeout_s: float = 30.0
    # NORMAL (WAL): a committed label survives any crash of the program (SIGKILL included, see
    # tests/store/test_concurrency.py) and the file is never corrupted; only an OS crash or power
    # cut can undo the last commits. FULL also fsyncs every commit: that survives a power cut,
    # but on the bench VM costs ~4 ms per label and a p99 of 20-90 ms with 8 busy writers
    # (bench/RESULTS.md). Pass "FULL" where the disk is fast or the power unreliable.
    synchronous: str = "NORMAL"

    def __post_init__(self) -> None:
        if self.synchronous not in ("NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be NORMAL, FULL or EXTRA, not {self.synchronous!r}")


def disk_error(path: Path, exc: BaseException, *, writing: bool = True) -> StoreIOError | None:
    """The ``StoreIOError`` for an error that the disk holding the database ``path`` caused
    (``sqlite3`` or ``OSError``), or None for any other error (those stay what they are).

    SQLite says SQLITE_FULL when a write hits a full disk, but a generic I/O error when the
    shared-memory index cannot grow; an I/O error with (almost) no free space left on the
    disk is therefore reported as a full disk too."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        primary = None if code is None else code & 0xFF  # extended codes carry it in the low byte
        kind = {
            sqlite3.SQLITE_FULL: "full",
            sqlite3.SQLITE_READONLY: "read-only",
            sqlite3.SQLITE_IOERR: "io",
            sqlite3.SQLITE_CANTOPEN: "io",
        }.get(primary)
        detail = str(exc)
    elif isinstance(exc, OSError):
        kind = (
            "full" if exc.errno in _FULL_ERRNOS else "read-only" if exc.errno in _READ_ONLY_ERRNOS else "io"
        )
        detail = exc.strerror or str(exc)
    else:
        kind = None
    if kind is None:
        return None
    if kind == "io" and _free_bytes(path) < _NEARLY_FULL_BYTES:
        kind = "full"
    saved = ", so nothing was saved" if writing else ""
    if kind == "full":
        return StoreFullError(
            f"the disk holding {path} is full{saved}; free some space there, then try again"
        )
    if kind == "read-only":
        return StoreReadOnlyError(
            f"{path} cannot be written ({detail}){saved}; make the file and its folder writable, then restart"
        )
    return StoreIOError(
        f"cannot {'write' if writing else 'read'} {path} ({detail}){saved}; check its disk (free space, "
        "errors) and that the file is still there, then try again"
    )


def _free_bytes(path: Path) -> int:
    """Bytes free for this user on the disk holding ``path``; a large number where unknown."""
    try:
        st = os.statvfs(path.parent)
    except OSError:
        return 1 << 62
    return st.f_bavail * st.f_frsize


class _ThreadConnection:
    """Holds one thread's connection in its thread-local storage; Python drops it when the
    thread ends, which runs the finalizer that closes the connection."""

    __slots__ = ("db", "__weakref__")

    def __init__(self, db: Database) -> None:
        self.db = db


def _forget_connection(lock: threading.Lock, connections: set[Database], db: Database) -> None:
    with lock:
        if db in connections:
            connections.discard(db)
            db.close()


def _utc_iso(moment: datetime) -> str:
    # Fixed width, UTC, microseconds: string order is time order ("since" filters compare text).
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def parse_since(value: str | datetime | None) -> str | None:
    """An ISO date or datetime (naive = UTC) as the store's timestamp text, None passes."""
    if value is None or isinstance(value, datetime):
        return None if value is None else _utc_iso(value)
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise ExportFormatError(f"since must be an ISO date or time like 2025-01-31, not {value!r}") from exc
    return _utc_iso(moment)


_LABEL_COLUMNS = """l.id, s.trace_id, s.idx AS step_index, l.item_kind, l.alternative_id, l.annotator,
    l.verdict, l.error_type, l.comment, l.time_spent_s, l.created_at, l.updated_at"""
_LABEL_KEYS = (
    "id",
    "trace_id",
    "step_index",
    "item_kind",
    "alternative_id",
    "annotator",
    "verdict",
    "error_type",
    "comment",
    "time_spent_s",
    "created_at",
    "updated_at",
)
_EVENT_KEYS = ("id", "action", "verdict", "error_type", "comment", "time_spent_s", "prev_event_id", "at")


class Store(ReviewVerbs):
    """One annotation database. Create with ``Store.open(path)``; close with ``close()``.
    The verbs of roles, review, resolved labels and analysis come from ``ReviewVerbs``."""

    def __init__(self, path: Path, config: StoreConfig, clock: Callable[[], datetime]) -> None:
        self.path = path
        self.config = config
        self._clock = clock
        self._local = threading.local()
        self._connections: set[Database] = set()  # every thread's open connection
        self._lock = threading.Lock()  # guards _connections
        self._write_lock = threading.Lock()  # one writer at a time in this process
        self._lock_fd: int | None = None  # the cross-process writer lock file
        self._target: str | None = None  # a URI to open instead of the path (read-only mode)
        # Why the database cannot be written (None: it can); then every write is refused.
        self.read_only: str | None = None

    # ------------------------------------------------------------------ opening, connections

    @classmethod
    def open(
        cls,
        path: str | Path,
        config: StoreConfig | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> Store:
        """Open (creating or migrating) the database at ``path``. ``clock`` returns the current
        time (tests pass a fixed one); default: the UTC wall clock.

        A database that exists but cannot be written is opened read-only (see the module doc);
        one that does not exist and cannot be created raises DatabaseOpenError."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseOpenError(
                f"cannot create the folder {path.parent} ({exc.strerror}); pass a --db in a folder you can write to"
            ) from None
        store = cls(path, config or StoreConfig(), clock or (lambda: datetime.now(UTC)))
        try:
            store.read_only = store._check_writable()
            if store.read_only:
                store._open_read_only()
            store._migrate()
        except sqlite3.DatabaseError as exc:
            store.close()
            code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
            error = None if code == sqlite3.SQLITE_CANTOPEN else disk_error(path, exc, writing=False)
            if error is not None:
                raise error from exc
            raise DatabaseOpenError(
                f"{path} is not an annotation database ({exc}); pass another --db"
            ) from exc
        except BaseException:
            store.close()
            raise
        return store

    def _check_writable(self) -> str | None:
        """Why this database cannot be written, or None when it can: its folder and file must be
        writable and the writer lock file (created here) must open for writing."""
        # os.access, not a trial open: closing any descriptor of the database file would drop
        # the POSIX locks that SQLite holds on it for the other connections of this process.
        for what, name in ((self.path.parent, "its folder"), (self.path, "the file")):
            if what.exists() and not os.access(what, os.W_OK):
                flags = os.statvfs(what).f_flag
                why = "read-only file system" if flags & os.ST_RDONLY else "permission denied"
                return f"{why}: {name}"
        try:
            self._lock_file()
        except OSError as exc:
            if exc.errno in _READ_ONLY_ERRNOS:
                return f"{exc.strerror.lower()}: {Path(exc.filename or self.path).name}"
            if exc.errno in _FULL_ERRNOS:
                raise disk_error(self.path, exc, writing=False) from exc
            # Anything else (a folder passed as the database, ...): SQLite says what is wrong.
        return None

    def _open_read_only(self) -> None:
        """Open the database for reading only (``self.read_only`` says why it cannot be written)."""
        if not self.path.exists():
            raise DatabaseOpenError(
                f"cannot create {self.path} ({self.read_only}); pass a --db in a folder you can write to"
            )
        uri = self.path.absolute().as_uri()
        self._target = f"{uri}?mode=ro"
        try:
            self.db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError as exc:
            # No -shm index and none can be made: SQLITE_CANTOPEN (a read-only disk) or
            # SQLITE_READONLY_CANTINIT (a folder without write permission).
            code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
            if code not in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY):
                raise
            if Path(f"{self.path}-wal").exists():
                raise DatabaseOpenError(
                    f"{self.path} cannot be written ({self.read_only}) and has unfinished writes in "
                    f"{self.path.name}-wal; make the file and its folder writable once, then start again"
                ) from None
            # A WAL database whose shared-memory index (-shm) is gone and cannot be made in a
            # read-only folder: SQLite can read it only as immutable. Without a -wal file there
            # are no unfinished writes to apply. (Should someone make it writable and write to
            # it meanwhile, this process would not see those writes until it opens it again.)
            self.close()
            self._target = f"{uri}?immutable=1"
            self.db.execute("SELECT count(*) FROM sqlite_master").fetchone()

    @property
    def db(self) -> Database:
        """This thread's connection (created on first use, closed when the thread ends)."""
        holder = getattr(self._local, "holder", None)
        if holder is None:
            conn = sqlite3.connect(
                self._target or str(self.path),
                timeout=self.config.busy_timeout_s,
                check_same_thread=False,
                uri=self._target is not None,
            )
            db = Database(conn, execute_plugins=False)
            try:
                db.execute(f"PRAGMA busy_timeout = {int(self.config.busy_timeout_s * 1000)}")
                db.execute("PRAGMA foreign_keys = ON")
                db.execute(f"PRAGMA synchronous = {self.config.synchronous}")
            except BaseException:
                conn.close()  # the file could not be opened (a disk error): no connection kept
                raise
            with self._lock:
                self._connections.add(db)
            # A web server's worker threads come and go (an idle one ends after a few seconds):
            # close each thread's connection when it ends, or its file descriptors and page
            # cache would stay with the process until it ran out of them.
            holder = _ThreadConnection(db)
            weakref.finalize(holder, _forget_connection, self._lock, self._connections, db)
            self._local.holder = holder
        return holder.db

    def close(self) -> None:
        """Close every thread's connection. The Store is unusable afterwards."""
        with self._lock:
            for db in self._connections:
                db.close()
            self._connections.clear()  # (the threads' finalizers find nothing more to do)
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
        self._local = threading.local()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        db = self.db
        if not self.read_only:
            db.enable_wal()  # persistent in the file; must run outside a transaction
        known = {m.name for m in migrations._migrations}
        newer = [m.name for m in migrations.applied(db) if m.name not in known]
        if newer:
            raise DatabaseTooNewError(
                f"{self.path} was migrated by a newer annotation_db ({newer[0]}); upgrade this program"
            )
        pending = migrations.pending(db)
        if pending and self.read_only:
            raise DatabaseOpenError(
                f"{self.path} needs upgrading ({pending[0].name}) but cannot be written ({self.read_only}); "
                "make the file and its folder writable, then start again"
            )
        if pending:
            # Hold the write lock for the whole run so that two processes opening the same new
            # file do not both try to create the tables; each migration is a savepoint inside.
            with self._write() as db:
                migrations.apply(db)

    @contextlib.contextmanager
    def _write(self) -> Iterator[Database]:
        """One write transaction holding the write lock from its start (see module doc).
        Errors of the disk become ``StoreIOError`` subclasses (see ``disk_error``)."""
        if self.read_only:
            raise StoreReadOnlyError(
                f"{self.path} is open read-only ({self.read_only}), so nothing was saved; "
                "make the file and its folder writable, then restart"
            )
        try:
            db = self.db
            if db.conn.in_transaction:  # nested: a savepoint inside the caller's transaction
                with db.atomic():
                    yield db
                return
            with self._writer_turn():
                db.execute("BEGIN IMMEDIATE")
                try:
                    with db.atomic():  # a savepoint: rolled back on error before the outer ROLLBACK
                        yield db
                    db.conn.execute("COMMIT")
                except BaseException:
                    # Also after a failed COMMIT: on a full disk or an I/O error SQLite may keep
                    # the transaction open, and this thread's next write would then run nested
                    # inside it and never be committed.
                    db.rollback()
                    raise
        except sqlite3.Error as exc:
            error = disk_error(self.path, exc)
            if error is None:
                raise
            raise error from exc

    @contextlib.contextmanager
    def _writer_turn(self) -> Iterator[None]:
        """Wait for this writer's turn: first among this process's threads, then among processes.

        SQLite's busy handler polls with sleeps that grow to 100 ms, so under contention a
        waiting writer sleeps long after the lock is free (p99 of 0.6 s with 8 writers, see
        bench/RESULTS.md). Queueing on a lock the OS wakes us from keeps the wait to the time
        the writers ahead actually take. The file lock is advisory and released by the kernel
        when a process dies (SIGKILL included); where it is unavailable (not POSIX), writers
        fall back to SQLite's busy timeout alone.
        """
        timeout = self.config.busy_timeout_s
        if not self._write_lock.acquire(timeout=timeout):
            raise StoreBusyError(f"another writer held the database for {timeout:.0f} s; try again")
        try:
            try:
                fd = self._lock_file()
            except OSError as exc:
                raise disk_error(self.path, exc) from exc
            if fd is None:
                yield
                return
            deadline = time.monotonic() + timeout
            # Poll with a short, growing pause (0.2 ms to 2 ms) so that the wait is bounded by
            # the busy timeout: a blocking flock would hang the app behind a stuck process.
            pause = 0.0002
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise StoreBusyError(
                            f"another process held the database for {timeout:.0f} s; try again"
                        ) from None
                    time.sleep(pause)
                    pause = min(pause * 2, 0.002)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            self._write_lock.release()

    def _lock_file(self) -> int | None:
        """The writer lock file's descriptor (opened at ``open``; again here if that failed)."""
        if fcntl is None:
            return None
        if self._lock_fd is None:
            self._lock_fd = os.open(str(self.path) + "-writer.lock", os.O_RDWR | os.O_CREAT, 0o644)
        return self._lock_fd

    @contextlib.contextmanager
    def _read(self) -> Iterator[Database]:
        """A read transaction: every query inside sees the same snapshot."""
        try:
            with self.db.atomic() as db:
                yield db
        except sqlite3.Error as exc:
            error = disk_error(self.path, exc, writing=False)
            if error is None:
                raise
            raise error from exc

    def _now(self) -> str:
        return _utc_iso(self._clock())

    # ------------------------------------------------------------------ import

    def import_traces(self, path: str | Path) -> dict[str, int]:
        """Import a JSONL file of Trace JSON (one trace per line, blank lines ignored).

        All or nothing: a malformed line raises ImportFormatError naming the line and nothing
        is imported. Idempotent: a trace whose id is stored with the same content (clip,
        question, prompt, step and alternative texts) is skipped; with other content it raises
        TraceConflictError. Returns ``{"added": n, "skipped": n}``.
        """
        path = Path(path)
        items = [(where, _parse_json(where, line)) for where, line in _lines(path)]
        return self.add_traces(items)

    def add_traces(self, traces: Iterable[dict[str, Any] | tuple[str, dict[str, Any]]]) -> dict[str, int]:
        """Store Trace dicts (e.g. a live run's ``Trace.to_dict()``) in one transaction; same
        rules as ``import_traces``. Items may be ``(where, trace)`` to name them in errors."""
        items = []
        for i, item in enumerate(traces):
            where, data = item if isinstance(item, tuple) else (f"trace {i}", item)
            try:
                check_trace(data)
            except TraceFieldError as exc:
                raise ImportFormatError(f"{where}: {exc} (nothing was imported)") from None
            items.append((where, data))
        return self._insert_traces(items)

    def add_trace(self, trace: dict[str, Any]) -> dict[str, int]:
        """Store one Trace dict (idempotent, see ``import_traces``)."""
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
            except TraceFieldError as exc:
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
            ids = [data["id"] for _, data in items]
            stored: dict[str, str] = {}
            for chunk in _chunks(ids, 500):
                marks = ",".join("?" * len(chunk))
                rows = db.execute(f"SELECT id, identity_sha256 FROM traces WHERE id IN ({marks})", chunk)
                stored.update(dict(rows.fetchall()))
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
                clips.setdefault(data["clip"]["sha256"], _clip_row(data["clip"], now))
                traces.append(_trace_row(data, seq, identity, now))
                first_step = step_id + 1
                for step in data["steps"]:
                    step_id += 1
                    steps.append(_step_row(step, step_id, data["id"]))
                for alt in data.get("alternatives", []):
                    alt_id += 1
                    alternatives.append(_alternative_row(alt, alt_id, first_step + alt["step_index"], now))
            db.conn.executemany(_CLIP_UPSERT, list(clips.values()))
            db.conn.executemany(_insert_sql("traces", _TRACE_COLUMNS), traces)
            db.conn.executemany(_insert_sql("steps", _STEP_COLUMNS), steps)
            db.conn.executemany(_insert_sql("alternatives", _ALTERNATIVE_COLUMNS), alternatives)
        return {"added": len(traces), "skipped": skipped}

    # ------------------------------------------------------------------ reading traces

    def get_trace(self, trace_id: str, *, with_ids: bool = True) -> dict[str, Any]:
        """The stored trace in its Trace JSON form. With ``with_ids`` (default) steps and
        alternatives also carry their store ``id`` (alternatives: ``created_by`` too), which
        the label functions take; ``with_ids=False`` gives exactly the Trace JSON (for
        ``studio_trace.Trace.from_dict``), human alternatives included."""
        with self._read() as db:
            cursor = db.execute(
                "SELECT t.*, c.name, c.path, c.duration_s, c.fps, c.width, c.height, c.has_audio, "
                "c.frame_times_s, c.extra AS clip_extra FROM traces t JOIN clips c ON c.sha256 = t.clip_sha256 "
                "WHERE t.id = ?",
                [trace_id],
            )
            row = cursor.fetchone()
            if row is None:
                raise UnknownTraceError(
                    f"no trace {trace_id!r} is stored; import it or pick one from the queue"
                )
            t = dict(zip([d[0] for d in cursor.description], row, strict=True))
            steps = db.execute(
                "SELECT id, idx, text, token_start, token_end, score, token_kl, top_t, scores, token_kls, "
                "expected_correctness, extra FROM steps WHERE trace_id = ? ORDER BY idx",
                [trace_id],
            ).fetchall()
            alts = db.execute(
                "SELECT a.id, s.idx, a.text, a.source, a.settings, a.expected_correctness, a.created_by, a.extra "
                "FROM alternatives a JOIN steps s ON s.id = a.step_id WHERE s.trace_id = ? ORDER BY a.id",
                [trace_id],
            ).fetchall()
        trace = {
            "schema_version": t["schema_version"],
            "id": t["id"],
            "source": t["source"],
            "clip": {
                "sha256": t["clip_sha256"],
                "name": t["name"],
                "path": t["path"],
                "duration_s": t["duration_s"],
                "fps": t["fps"],
                "width": t["width"],
                "height": t["height"],
                "has_audio": bool(t["has_audio"]),
                "frame_times_s": json.loads(t["frame_times_s"] or "[]"),
                **json.loads(t["clip_extra"]),
            },
            "question": t["question"],
            "options": _loads(t["options"]),
            "reference_answer": t["reference_answer"],
            "prompt_kind": t["prompt_kind"],
            "prompt": t["prompt"],
            "model": json.loads(t["model"]),
            "decoding": json.loads(t["decoding"]),
            "scoring": _loads(t["scoring"]),
            "steps": [
                {
                    "id": s[0],
                    "index": s[1],
                    "text": s[2],
                    "token_start": s[3],
                    "token_end": s[4],
                    "score": s[5],
                    "token_kl": _loads(s[6]),
                    "top_t": bool(s[7]),
                    "scores": json.loads(s[8]),
                    "token_kls": json.loads(s[9]),
                    "expected_correctness": s[10],
                    **json.loads(s[11]),
                }
                for s in steps
            ],
            "alternatives": [
                {
                    "id": a[0],
                    "step_index": a[1],
                    "text": a[2],
                    "source": a[3],
                    "settings": json.loads(a[4]),
                    "expected_correctness": a[5],
                    "created_by": a[6],
                    **json.loads(a[7]),
                }
                for a in alts
            ],
            "answer": {"text": t["answer_text"], "choice": t["answer_choice"]},
            "timings": json.loads(t["timings"]),
            "created_at": t["created_at"],
            **json.loads(t["extra"]),
        }
        if not with_ids:
            for item in trace["steps"]:
                del item["id"]
            for item in trace["alternatives"]:
                del item["id"], item["created_by"]
        return trace

    def queue(
        self,
        annotator: str,
        *,
        unlabeled_only: bool = True,
        order: str = "max_score",
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Traces to label, with ``annotator``'s progress on each.

        ``order``: "max_score" (highest step contrastive score first: the steps most likely
        wrong; unscored traces last), "oldest", "newest", or "fewest_annotators" (spread
        overlap: traces the fewest people have labeled first). ``unlabeled_only`` leaves out
        traces whose every step ``annotator`` has labeled. Each item: trace_id, clip_name,
        video_path, clip_sha256, question, prompt_kind, source, n_steps, max_score,
        labeled_by_me, done_by_me, n_annotators.
        """
        annotator = _check_annotator(annotator)
        if order not in QUEUE_ORDERS:
            raise ValueError(f"order must be one of {', '.join(QUEUE_ORDERS)}, not {order!r}")
        order_sql = {
            "max_score": "st.max_score IS NULL, st.max_score DESC, t.seq",
            "oldest": "t.seq",
            "newest": "t.seq DESC",
            "fewest_annotators": "coalesce(who.n, 0), st.max_score IS NULL, st.max_score DESC, t.seq",
        }[order]
        where = "WHERE coalesce(mine.n, 0) < coalesce(st.n_steps, 0)" if unlabeled_only else ""
        sql = f"""
            WITH st AS (SELECT trace_id, count(*) AS n_steps, max(score) AS max_score
                        FROM steps GROUP BY trace_id),
                 mine AS (SELECT s.trace_id, count(*) AS n FROM labels l JOIN steps s ON s.id = l.step_id
                          WHERE l.annotator = ? AND l.item_kind = 'step' GROUP BY s.trace_id),
                 who AS (SELECT s.trace_id, count(DISTINCT l.annotator) AS n FROM labels l
                         JOIN steps s ON s.id = l.step_id WHERE l.item_kind = 'step' GROUP BY s.trace_id)
            SELECT t.id, c.name, c.path, c.sha256, t.question, t.prompt_kind, t.source,
                   coalesce(st.n_steps, 0), st.max_score, coalesce(mine.n, 0), coalesce(who.n, 0)
            FROM traces t JOIN clips c ON c.sha256 = t.clip_sha256
            LEFT JOIN st ON st.trace_id = t.id LEFT JOIN mine ON mine.trace_id = t.id
            LEFT JOIN who ON who.trace_id = t.id
            {where} ORDER BY {order_sql} LIMIT ?"""
        with self._read() as db:
            rows = db.execute(sql, [annotator, -1 if limit is None else limit]).fetchall()
        return [
            {
                "trace_id": r[0],
                "clip_name": r[1],
                "video_path": r[2],
                "clip_sha256": r[3],
                "question": r[4],
                "prompt_kind": r[5],
                "source": r[6],
                "n_steps": r[7],
                "max_score": r[8],
                "labeled_by_me": r[9],
                "done_by_me": r[9] >= r[7],
                "n_annotators": r[10],
            }
            for r in rows
        ]

    def progress(self) -> dict[str, Any]:
        """Totals (traces, steps, alternatives, labels, steps labeled by anyone) and, per
        annotator, labels, steps labeled, traces done (every step labeled) and time spent (s)."""
        with self._read() as db:
            one = db.execute(
                """SELECT (SELECT count(*) FROM traces), (SELECT count(*) FROM steps),
                          (SELECT count(*) FROM alternatives), (SELECT count(*) FROM labels),
                          (SELECT count(DISTINCT step_id) FROM labels WHERE item_kind = 'step')"""
            ).fetchone()
            per = db.execute(
                """WITH n AS (SELECT trace_id, count(*) AS n FROM steps GROUP BY trace_id),
                        m AS (SELECT l.annotator, s.trace_id, count(*) AS k FROM labels l
                              JOIN steps s ON s.id = l.step_id WHERE l.item_kind = 'step'
                              GROUP BY l.annotator, s.trace_id)
                   SELECT a.name,
                          (SELECT count(*) FROM labels WHERE annotator = a.name),
                          (SELECT count(*) FROM labels WHERE annotator = a.name AND item_kind = 'step'),
                          (SELECT count(*) FROM m JOIN n ON n.trace_id = m.trace_id
                           WHERE m.annotator = a.name AND m.k >= n.n),
                          (SELECT coalesce(sum(time_spent_s), 0) FROM label_events WHERE annotator = a.name)
                   FROM annotators a ORDER BY a.name"""
            ).fetchall()
        return {
            "traces": one[0],
            "steps": one[1],
            "alternatives": one[2],
            "labels": one[3],
            "steps_labeled": one[4],
            "annotators": {
                r[0]: {"labels": r[1], "steps_labeled": r[2], "traces_done": r[3], "time_s": r[4]}
                for r in per
            },
        }

    # ------------------------------------------------------------------ labels

    def set_label(
        self,
        annotator: str,
        trace_id: str,
        step_index: int,
        verdict: str,
        *,
        alternative_id: int | None = None,
        error_type: str | None = None,
        comment: str = "",
        time_spent_s: float = 0.0,
    ) -> dict[str, Any]:
        """Set ``annotator``'s label of step ``step_index`` of ``trace_id`` (or of alternative
        ``alternative_id`` at that step). A second call updates the label; every call is kept in
        the history. ``verdict``: accept | reject | unsure; ``error_type`` (reject / unsure
        only): visual_misperception | audio_misperception | hallucination | reasoning_logic |
        other; ``time_spent_s`` is this action's seconds (the label keeps the running total).
        Returns the label (keys: id, trace_id, step_index, item_kind, alternative_id, annotator,
        verdict, error_type, comment, time_spent_s, created_at, updated_at)."""
        return self.set_labels(
            annotator,
            [
                {
                    "trace_id": trace_id,
                    "step_index": step_index,
                    "alternative_id": alternative_id,
                    "verdict": verdict,
                    "error_type": error_type,
                    "comment": comment,
                    "time_spent_s": time_spent_s,
                }
            ],
        )[0]

    def set_labels(self, annotator: str, labels: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Several ``set_label`` calls by one annotator in one transaction (all or none).
        Each dict has trace_id, step_index, verdict and optionally alternative_id, error_type,
        comment, time_spent_s."""
        annotator = _check_annotator(annotator)
        checked = []
        for item in labels:
            fields = _check_label(
                item.get("verdict"),
                item.get("error_type"),
                item.get("comment", ""),
                item.get("time_spent_s", 0.0),
            )
            checked.append((item["trace_id"], item["step_index"], item.get("alternative_id"), fields))
        now = self._now()
        with self._write() as db:
            _ensure_annotator(db, annotator, now)
            label_ids = []
            for trace_id, step_index, alternative_id, fields in checked:
                step_id = _resolve(db, trace_id, step_index, alternative_id)
                label_ids.append(_apply(db, step_id, alternative_id, annotator, "set", fields, now))
            return [_label_by_id(db, label_id) for label_id in label_ids]

    def clear_label(
        self, annotator: str, trace_id: str, step_index: int, *, alternative_id: int | None = None
    ) -> None:
        """Remove ``annotator``'s label of the item (kept in history; ``undo_label`` brings it back)."""
        annotator = _check_annotator(annotator)
        now = self._now()
        with self._write() as db:
            step_id = _resolve(db, trace_id, step_index, alternative_id)
            if _current_label_id(db, step_id, alternative_id, annotator) is None:
                raise UnknownLabelError(f"{annotator} has no label on this item to clear")
            _apply(db, step_id, alternative_id, annotator, "clear", None, now)

    def undo_label(
        self, annotator: str, trace_id: str, step_index: int, *, alternative_id: int | None = None
    ) -> dict[str, Any] | None:
        """Go back to ``annotator``'s state of the item before their last change (set, clear or
        undo); call again to go further back. Returns the label now in force, or None when the
        item is left unlabeled. NothingToUndoError when there is no earlier state."""
        annotator = _check_annotator(annotator)
        now = self._now()
        with self._write() as db:
            step_id = _resolve(db, trace_id, step_index, alternative_id)
            current = _latest_event(db, step_id, alternative_id, annotator)
            if current is None or (current["prev_event_id"] is None and current["verdict"] is None):
                raise NothingToUndoError(f"{annotator} has no earlier label on this item to go back to")
            if current["prev_event_id"] is None:
                state, prev = None, None
            else:
                target = _event(db, current["prev_event_id"])
                state = None if target["verdict"] is None else target
                prev = target["prev_event_id"]
            label_id = _apply(db, step_id, alternative_id, annotator, "undo", state, now, prev_event_id=prev)
            return None if label_id is None else _label_by_id(db, label_id)

    def label(self, label_id: int) -> dict[str, Any]:
        """One label by id (any annotator may read it)."""
        with self._read() as db:
            return _label_by_id(db, label_id)

    def edit_label(self, annotator: str, label_id: int, **changes: Any) -> dict[str, Any]:
        """Change fields (verdict, error_type, comment, time_spent_s) of the label ``label_id``.
        Raises LabelOwnershipError unless ``annotator`` owns it. Unchanged fields are kept."""
        annotator = _check_annotator(annotator)
        unknown = set(changes) - {"verdict", "error_type", "comment", "time_spent_s"}
        if unknown:
            raise ValueError(f"edit_label cannot change {', '.join(sorted(unknown))}")
        with self._write():
            current = self.label(label_id)
            _check_owner(current, annotator)
            fields = {k: current[k] for k in ("verdict", "error_type", "comment")} | {"time_spent_s": 0.0}
            if "verdict" in changes and changes["verdict"] == "accept" and "error_type" not in changes:
                fields["error_type"] = None  # accepting drops the error type
            fields.update(changes)
            return self.set_label(
                annotator,
                current["trace_id"],
                current["step_index"],
                fields["verdict"],
                alternative_id=current["alternative_id"],
                error_type=fields["error_type"],
                comment=fields["comment"],
                time_spent_s=fields["time_spent_s"],
            )

    def undo_label_by_id(self, annotator: str, label_id: int) -> dict[str, Any] | None:
        """``undo_label`` for the label ``label_id``; LabelOwnershipError unless it is ``annotator``'s."""
        annotator = _check_annotator(annotator)
        with self._write():
            current = self.label(label_id)
            _check_owner(current, annotator)
            return self.undo_label(
                annotator,
                current["trace_id"],
                current["step_index"],
                alternative_id=current["alternative_id"],
            )

    def labels_for_trace(self, trace_id: str, annotator: str | None = None) -> list[dict[str, Any]]:
        """Current labels on a trace's steps and alternatives (only ``annotator``'s if given),
        ordered by step, item (original step first), annotator."""
        sql = f"SELECT {_LABEL_COLUMNS} FROM labels l JOIN steps s ON s.id = l.step_id WHERE s.trace_id = ?"
        args: list[Any] = [trace_id]
        if annotator is not None:
            sql += " AND l.annotator = ?"
            args.append(_check_annotator(annotator))
        sql += " ORDER BY s.idx, l.alternative_id IS NOT NULL, l.alternative_id, l.annotator"
        with self._read() as db:
            self._require_trace(db, trace_id)
            return [dict(zip(_LABEL_KEYS, r, strict=True)) for r in db.execute(sql, args).fetchall()]

    def peer_labels(self, annotator: str, trace_id: str) -> list[dict[str, Any]]:
        """Blind mode: other annotators' labels on this trace, only on the items ``annotator``
        has labeled already (so nobody sees others' verdicts before giving their own)."""
        annotator = _check_annotator(annotator)
        sql = f"""SELECT {_LABEL_COLUMNS} FROM labels l JOIN steps s ON s.id = l.step_id
                  WHERE s.trace_id = ? AND l.annotator != ? AND EXISTS (
                      SELECT 1 FROM labels m WHERE m.annotator = ? AND m.step_id = l.step_id
                      AND m.alternative_id IS l.alternative_id)
                  ORDER BY s.idx, l.alternative_id IS NOT NULL, l.alternative_id, l.annotator"""
        with self._read() as db:
            self._require_trace(db, trace_id)
            rows = db.execute(sql, [trace_id, annotator, annotator]).fetchall()
        return [dict(zip(_LABEL_KEYS, r, strict=True)) for r in rows]

    def label_history(
        self, annotator: str, trace_id: str, step_index: int, *, alternative_id: int | None = None
    ) -> list[dict[str, Any]]:
        """Every change ``annotator`` made to the item, oldest first (keys: id, action, verdict,
        error_type, comment, time_spent_s, prev_event_id, at; verdict None = no label)."""
        annotator = _check_annotator(annotator)
        with self._read() as db:
            step_id = _resolve(db, trace_id, step_index, alternative_id)
            rows = db.execute(
                f"SELECT {', '.join(_EVENT_KEYS)} FROM label_events WHERE step_id = ? AND annotator = ? "
                "AND alternative_id IS ? ORDER BY id",
                [step_id, annotator, alternative_id],
            ).fetchall()
        return [dict(zip(_EVENT_KEYS, r, strict=True)) for r in rows]

    def _require_trace(self, db: Database, trace_id: str) -> None:
        if db.execute("SELECT 1 FROM traces WHERE id = ?", [trace_id]).fetchone() is None:
            raise UnknownTraceError(f"no trace {trace_id!r} is stored; import it or pick one from the queue")

    # ------------------------------------------------------------------ alternatives, preferences

    def set_expected_correctness(
        self,
        trace_id: str,
        step_index: int,
        value: float | None,
        *,
        alternative_id: int | None = None,
    ) -> None:
        """Record the expected correctness of step ``step_index`` (or of its alternative
        ``alternative_id``) estimated by rollouts: the share of completions from it that reach
        the reference answer (the paper's p for the soft pDPO label). None clears it. A later
        estimate replaces an earlier one (rollouts are re-run with more samples, not averaged)."""
        if value is not None and not (isinstance(value, int | float) and 0 <= value <= 1):
            raise InvalidLabelError("expected_correctness must be a fraction between 0 and 1")
        with self._write() as db:
            step_id = _resolve(db, trace_id, step_index, alternative_id)
            if alternative_id is None:
                db.execute("UPDATE steps SET expected_correctness = ? WHERE id = ?", [value, step_id])
            else:
                db.execute(
                    "UPDATE alternatives SET expected_correctness = ? WHERE id = ? AND step_id = ?",
                    [value, alternative_id, step_id],
                )

    def add_alternative(
        self,
        annotator: str,
        trace_id: str,
        step_index: int,
        text: str,
        *,
        source: str = "human",
        settings: dict[str, Any] | None = None,
        expected_correctness: float | None = None,
    ) -> dict[str, Any]:
        """Add a candidate for step ``step_index`` (a human rewrite by ``annotator``, or a model
        sample). The same text at the same step is the same alternative: its id is returned.
        Returns {id, trace_id, step_index, text, source, created_by}."""
        annotator = _check_annotator(annotator)
        if not isinstance(text, str) or not text.strip():
            raise InvalidAlternativeError("an alternative needs a non-empty text; type the replacement step")
        if source not in ("human", "model"):
            raise InvalidAlternativeError(f"alternative source must be human or model, not {source!r}")
        if expected_correctness is not None and not (
            isinstance(expected_correctness, int | float) and 0 <= expected_correctness <= 1
        ):
            raise InvalidAlternativeError("expected_correctness must be a fraction between 0 and 1")
        text = text.strip()
        now = self._now()
        with self._write() as db:
            step_id = _resolve(db, trace_id, step_index, None)
            _ensure_annotator(db, annotator, now)
            row = db.execute(
                "SELECT id FROM alternatives WHERE step_id = ? AND text = ?", [step_id, text]
            ).fetchone()
            if row is None:
                cursor = db.execute(
                    "INSERT INTO alternatives (step_id, text, source, settings, expected_correctness, created_by, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [step_id, text, source, json.dumps(settings or {}), expected_correctness, annotator, now],
                )
                alt_id = cursor.lastrowid
            else:
                alt_id = row[0]
            source_, created_by = db.execute(
                "SELECT source, created_by FROM alternatives WHERE id = ?", [alt_id]
            ).fetchone()
        return {
            "id": alt_id,
            "trace_id": trace_id,
            "step_index": step_index,
            "text": text,
            "source": source_,
            "created_by": created_by,
        }

    def record_preference(
        self,
        annotator: str,
        trace_id: str,
        step_index: int,
        alternative_id: int,
        chosen: str | None = "alternative",
    ) -> dict[str, Any]:
        """Record that ``annotator`` prefers the alternative (``chosen="alternative"``) or the
        original step (``"original"``) at this step; None withdraws the preference. Every call
        is kept in ``preference_events``. Returns {trace_id, step_index, alternative_id,
        annotator, chosen}."""
        annotator = _check_annotator(annotator)
        if chosen is not None and chosen not in CHOICES:
            raise InvalidLabelError(f"chosen must be alternative, original or None, not {chosen!r}")
        now = self._now()
        with self._write() as db:
            step_id = _resolve(db, trace_id, step_index, alternative_id)
            _ensure_annotator(db, annotator, now)
            db.execute(
                "INSERT INTO preference_events (step_id, alternative_id, annotator, chosen, at) VALUES (?, ?, ?, ?, ?)",
                [step_id, alternative_id, annotator, chosen, now],
            )
            if chosen is None:
                db.execute(
                    "DELETE FROM preferences WHERE alternative_id = ? AND annotator = ?",
                    [alternative_id, annotator],
                )
            else:
                db.execute(
                    "INSERT INTO preferences (step_id, alternative_id, annotator, chosen, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (alternative_id, annotator) "
                    "DO UPDATE SET chosen = excluded.chosen, updated_at = excluded.updated_at",
                    [step_id, alternative_id, annotator, chosen, now, now],
                )
        return {
            "trace_id": trace_id,
            "step_index": step_index,
            "alternative_id": alternative_id,
            "annotator": annotator,
            "chosen": chosen,
        }

    def preferences_for_trace(self, trace_id: str, annotator: str | None = None) -> list[dict[str, Any]]:
        """Current preferences at a trace's steps (only ``annotator``'s if given)."""
        sql = """SELECT s.trace_id, s.idx, p.alternative_id, p.annotator, p.chosen, p.updated_at
                 FROM preferences p JOIN steps s ON s.id = p.step_id WHERE s.trace_id = ?"""
        args: list[Any] = [trace_id]
        if annotator is not None:
            sql += " AND p.annotator = ?"
            args.append(_check_annotator(annotator))
        keys = ("trace_id", "step_index", "alternative_id", "annotator", "chosen", "updated_at")
        with self._read() as db:
            rows = db.execute(sql + " ORDER BY s.idx, p.alternative_id, p.annotator", args).fetchall()
        return [dict(zip(keys, r, strict=True)) for r in rows]

    # ------------------------------------------------------------------ export, stats

    def export(
        self,
        format: str,
        out: str | Path,
        *,
        annotators: list[str] | None = None,
        min_agreement: float = 0.0,
        since: str | datetime | None = None,
        mu: float | None = None,
    ) -> dict[str, Any]:
        """Write the labels as training data; see ``annotation_db.export`` for the formats and
        rules. ``out`` ends in .jsonl or .parquet. Returns {"format", "path", "records"}."""
        from annotation_db import export

        if not 0.0 <= min_agreement <= 1.0:
            raise ExportFormatError(f"min_agreement is a fraction between 0 and 1, not {min_agreement!r}")
        if mu is not None and not mu > 0:
            raise ExportFormatError(f"mu must be a positive number, not {mu!r}")
        filters = export.ExportOptions(
            annotators=tuple(_check_annotator(a) for a in annotators) if annotators else None,
            min_agreement=min_agreement,
            since=parse_since(since),
            mu=export.DEFAULT_MU if mu is None else mu,
        )
        export.check_format(format)
        export.check_out(Path(out))
        records = self.export_records(format, filters)
        path = export.write(records, format, Path(out))
        return {"format": format, "path": str(path), "records": len(records)}

    def export_records(self, format: str, filters: Any = None) -> list[dict[str, Any]]:
        """The records ``export`` would write, as dicts (``filters``: export.ExportOptions)."""
        from annotation_db import export

        filters = filters or export.ExportOptions()
        export.check_format(format)
        with self._read() as db:
            data = export.collect(db, filters)
        return export.RECORD_BUILDERS[format](data, filters)

    def stats(self) -> dict[str, Any]:
        """Counts, per-annotator effort, agreement and calibration; see ``annotation_db.stats``."""
        from annotation_db import stats

        with self._read() as db:
            return stats.compute(db)


# ---------------------------------------------------------------------- helpers (one transaction)


def _check_annotator(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidAnnotatorError("an annotator name is required; sign in or pass --annotator NAME")
    name = name.strip()
    if len(name) > MAX_ANNOTATOR_CHARS or any(ord(ch) < 32 for ch in name):
        raise InvalidAnnotatorError(
            f"annotator names are at most {MAX_ANNOTATOR_CHARS} printable characters; pick a shorter name"
        )
    return name


def _check_label(verdict: Any, error_type: Any, comment: Any, time_spent_s: Any) -> dict[str, Any]:
    if verdict not in VERDICTS:
        raise InvalidLabelError(f"verdict must be one of {', '.join(VERDICTS)}, not {verdict!r}")
    if isinstance(error_type, str):
        # Accept the human spellings the UI shows ("Reasoning/logic", "visual misperception").
        error_type = error_type.strip().lower().replace("/", "_").replace(" ", "_").replace("-", "_") or None
    if error_type is not None:
        if error_type not in ERROR_TYPES:
            raise InvalidLabelError(f"error type must be one of {', '.join(ERROR_TYPES)}, not {error_type!r}")
        if verdict == "accept":
            raise InvalidLabelError(
                "an accepted step has no error type; drop the error type or reject the step"
            )
    if comment is None:
        comment = ""
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT_CHARS:
        raise InvalidLabelError(f"a comment is text of at most {MAX_COMMENT_CHARS} characters; shorten it")
    if (
        not isinstance(time_spent_s, int | float)
        or isinstance(time_spent_s, bool)
        or not math.isfinite(time_spent_s)
        or time_spent_s < 0
    ):
        raise InvalidLabelError(f"time spent must be a number of seconds >= 0, not {time_spent_s!r}")
    return {
        "verdict": verdict,
        "error_type": error_type,
        "comment": comment,
        "time_spent_s": float(time_spent_s),
    }


def _check_owner(label: dict[str, Any], annotator: str) -> None:
    if label["annotator"] != annotator:
        raise LabelOwnershipError(
            f"label {label['id']} belongs to {label['annotator']}; {annotator} can only change their own labels"
        )


def _ensure_annotator(db: Database, annotator: str, now: str) -> None:
    db.execute("INSERT OR IGNORE INTO annotators (name, created_at) VALUES (?, ?)", [annotator, now])


def _resolve(db: Database, trace_id: str, step_index: int, alternative_id: int | None) -> int:
    """The step id of (trace, index); checks that the alternative belongs to that step."""
    row = db.execute("SELECT id FROM steps WHERE trace_id = ? AND idx = ?", [trace_id, step_index]).fetchone()
    if row is None:
        n = db.execute("SELECT count(*) FROM steps WHERE trace_id = ?", [trace_id]).fetchone()[0]
        if n == 0 and db.execute("SELECT 1 FROM traces WHERE id = ?", [trace_id]).fetchone() is None:
            raise UnknownTraceError(f"no trace {trace_id!r} is stored; import it or pick one from the queue")
        raise UnknownStepError(f"trace {trace_id!r} has no step {step_index!r}; its steps are 0 to {n - 1}")
    if alternative_id is not None:
        alt = db.execute("SELECT step_id FROM alternatives WHERE id = ?", [alternative_id]).fetchone()
        if alt is None or alt[0] != row[0]:
            raise UnknownAlternativeError(
                f"no alternative {alternative_id!r} at step {step_index} of trace {trace_id!r}; reload the trace"
            )
    return row[0]


def _current_label_id(db: Database, step_id: int, alternative_id: int | None, annotator: str) -> int | None:
    if alternative_id is None:
        row = db.execute(
            "SELECT id FROM labels WHERE step_id = ? AND annotator = ? AND alternative_id IS NULL",
            [step_id, annotator],
        ).fetchone()
    else:
        row = db.execute(
            "SELECT id FROM labels WHERE alternative_id = ? AND annotator = ?", [alternative_id, annotator]
        ).fetchone()
    return None if row is None else row[0]


def _latest_event(
    db: Database, step_id: int, alternative_id: int | None, annotator: str
) -> dict[str, Any] | None:
    row = db.execute(
        "SELECT max(id) FROM label_events WHERE step_id = ? AND alternative_id IS ? AND annotator = ?",
        [step_id, alternative_id, annotator],
    ).fetchone()
    return None if row[0] is None else _event(db, row[0])


def _event(db: Database, event_id: int) -> dict[str, Any]:
    row = db.execute(f"SELECT {', '.join(_EVENT_KEYS)} FROM label_events WHERE id = ?", [event_id]).fetchone()
    return dict(zip(_EVENT_KEYS, row, strict=True))


def _apply(
    db: Database,
    step_id: int,
    alternative_id: int | None,
    annotator: str,
    action: str,
    state: dict[str, Any] | None,
    now: str,
    *,
    prev_event_id: int | None | str = "latest",
) -> int | None:
    """Append a history event and make ``state`` (None: no label) the current label.

    ``prev_event_id`` is the event that undoing this one returns to: for set and clear the
    state before them (the latest event); undo passes the target's own predecessor.
    Returns the label id, or None when the item is left unlabeled.
    """
    if prev_event_id == "latest":
        latest = _latest_event(db, step_id, alternative_id, annotator)
        prev_event_id = None if latest is None else latest["id"]
    kind = "step" if alternative_id is None else "alternative"
    state = state or {}
    spent = float(state.get("time_spent_s", 0.0)) if action == "set" else 0.0
    event_id = db.execute(
        "INSERT INTO label_events (item_kind, step_id, alternative_id, annotator, action, verdict, error_type, "
        "comment, time_spent_s, prev_event_id, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            kind,
            step_id,
            alternative_id,
            annotator,
            action,
            state.get("verdict"),
            state.get("error_type"),
            state.get("comment"),
            spent,
            prev_event_id,
            now,
        ],
    ).lastrowid
    label_id = _current_label_id(db, step_id, alternative_id, annotator)
    if state.get("verdict") is None:
        if label_id is not None:
            db.execute("DELETE FROM labels WHERE id = ?", [label_id])
        return None
    # The label's time is all the time the annotator spent on the item, across every change.
    total = db.execute(
        "SELECT coalesce(sum(time_spent_s), 0) FROM label_events WHERE step_id = ? AND alternative_id IS ? "
        "AND annotator = ?",
        [step_id, alternative_id, annotator],
    ).fetchone()[0]
    values = [state["verdict"], state["error_type"], state["comment"] or "", total, now, event_id]
    if label_id is None:
        return db.execute(
            "INSERT INTO labels (item_kind, step_id, alternative_id, annotator, verdict, error_type, comment, "
            "time_spent_s, updated_at, event_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [kind, step_id, alternative_id, annotator, *values, now],
        ).lastrowid
    db.execute(
        "UPDATE labels SET verdict = ?, error_type = ?, comment = ?, time_spent_s = ?, updated_at = ?, "
        "event_id = ? WHERE id = ?",
        [*values, label_id],
    )
    return label_id


def _label_by_id(db: Database, label_id: int) -> dict[str, Any]:
    row = db.execute(
        f"SELECT {_LABEL_COLUMNS} FROM labels l JOIN steps s ON s.id = l.step_id WHERE l.id = ?", [label_id]
    ).fetchone()
    if row is None:
        raise UnknownLabelError(f"no label {label_id!r} is stored; reload the labels")
    return dict(zip(_LABEL_KEYS, row, strict=True))


# ---------------------------------------------------------------------- import rows


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


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


_CLIP_COLUMNS = (
    "sha256",
    "name",
    "path",
    "duration_s",
    "fps",
    "width",
    "height",
    "has_audio",
    "frame_times_s",
    "created_at",
    "extra",
)
# Trace JSON keys with a column of their own; any other key is kept in the row's ``extra``.
_CLIP_KEYS = {"sha256", "name", "path", "duration_s", "fps", "width", "height", "has_audio", "frame_times_s"}
_TRACE_KEYS = {
    "schema_version",
    "id",
    "source",
    "clip",
    "question",
    "options",
    "reference_answer",
    "prompt_kind",
    "prompt",
    "model",
    "decoding",
    "scoring",
    "steps",
    "alternatives",
    "answer",
    "timings",
    "created_at",
}
_STEP_KEYS = {
    "index",
    "text",
    "token_start",
    "token_end",
    "score",
    "token_kl",
    "top_t",
    "scores",
    "token_kls",
    "expected_correctness",
}
_ALTERNATIVE_KEYS = {"step_index", "text", "source", "settings", "expected_correctness"}


def _extra(data: dict[str, Any], known: set[str]) -> str:
    return _dumps_object({k: v for k, v in data.items() if k not in known})


def _dumps_object(value: dict[str, Any] | None) -> str:
    # Most of these objects are empty: skip the encoder call (it dominates import time).
    return json.dumps(value, ensure_ascii=False) if value else "{}"


# A clip seen again keeps what is known and fills in what was missing (published reasoning
# carries no media facts; a later live run does).
_CLIP_UPSERT = (
    _insert_sql("clips", _CLIP_COLUMNS)
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


def _clip_row(clip: dict[str, Any], now: str) -> tuple[Any, ...]:
    return (
        clip["sha256"],
        clip.get("name") or "",
        clip.get("path") or "",
        clip.get("duration_s"),
        clip.get("fps"),
        clip.get("width"),
        clip.get("height"),
        None if clip.get("has_audio") is None else int(bool(clip["has_audio"])),
        _dumps(clip.get("frame_times_s")),
        now,
        _extra(clip, _CLIP_KEYS),
    )


_TRACE_COLUMNS = (
    "id",
    "seq",
    "clip_sha256",
    "question",
    "options",
    "reference_answer",
    "prompt_kind",
    "prompt",
    "model",
    "decoding",
    "scoring",
    "answer_text",
    "answer_choice",
    "timings",
    "source",
    "created_at",
    "schema_version",
    "identity_sha256",
    "imported_at",
    "extra",
)


def _trace_row(data: dict[str, Any], seq: int, identity: str, now: str) -> tuple[Any, ...]:
    answer = data.get("answer") or {}
    return (
        data["id"],
        seq,
        data["clip"]["sha256"],
        data["question"],
        _dumps(data.get("options")),
        data.get("reference_answer"),
        data.get("prompt_kind", "reasoning"),
        data.get("prompt", ""),
        json.dumps(data.get("model") or {}, ensure_ascii=False),
        json.dumps(data.get("decoding") or {}, ensure_ascii=False),
        _dumps(data.get("scoring")),
        answer.get("text") or "",
        answer.get("choice"),
        json.dumps(data.get("timings") or {}, ensure_ascii=False),
        data.get("source", "live"),
        data.get("created_at") or now,
        data["schema_version"],
        identity,
        now,
        _extra(data, _TRACE_KEYS),
    )


_STEP_COLUMNS = (
    "id",
    "trace_id",
    "idx",
    "text",
    "token_start",
    "token_end",
    "score",
    "token_kl",
    "top_t",
    "scores",
    "token_kls",
    "expected_correctness",
    "extra",
)


def _step_row(step: dict[str, Any], step_id: int, trace_id: str) -> tuple[Any, ...]:
    return (
        step_id,
        trace_id,
        step["index"],
        step["text"],
        step.get("token_start"),
        step.get("token_end"),
        step.get("score"),
        _dumps(step.get("token_kl")),
        int(bool(step.get("top_t"))),
        _dumps_object(step.get("scores")),
        _dumps_object(step.get("token_kls")),
        step.get("expected_correctness"),
        _extra(step, _STEP_KEYS),
    )


_ALTERNATIVE_COLUMNS = (
    "id",
    "step_id",
    "text",
    "source",
    "settings",
    "expected_correctness",
    "created_by",
    "created_at",
    "extra",
)


def _alternative_row(alt: dict[str, Any], alt_id: int, step_id: int, now: str) -> tuple[Any, ...]:
    return (
        alt_id,
        step_id,
        alt["text"],
        alt.get("source", "model"),
        json.dumps(alt.get("settings") or {}, ensure_ascii=False),
        alt.get("expected_correctness"),
        None,
        now,
        _extra(alt, _ALTERNATIVE_KEYS),
    )
