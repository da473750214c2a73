"""Connections, locking and disk faults of a Store: the part every verb goes through.

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

Faults. A write commits in full or not at all (one transaction), and a committed write
survives a crash of the program (see ``StoreConfig.synchronous``). When the disk refuses a write
(full, read-only, failing) the transaction is rolled back and the write raises a
``StoreIOError`` subclass (``StoreFullError``, ``StoreReadOnlyError``) naming the file and what
to do; the Store stays usable and the next write succeeds once the disk is fixed. A database
that cannot be written when it is opened (a read-only file, folder or disk) is opened for
reading only: every read works, every write raises ``StoreReadOnlyError`` and ``read_only``
says why. tests/store/test_faults.py and tests/hardening/test_faults.py check all this.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

from sqlite_utils import Database

try:
    import fcntl
except ImportError:  # not POSIX: writers rely on SQLite's busy timeout alone
    fcntl = None

from annotation_db.errors import (
    DatabaseOpenError,
    DatabaseTooNewError,
    ExportFormatError,
    StoreBusyError,
    StoreFullError,
    StoreIOError,
    StoreReadOnlyError,
)
from annotation_db.migrations import migrations

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


def utc_iso(moment: datetime) -> str:
    # Fixed width, UTC, microseconds: string order is time order ("since" filters compare text).
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def parse_since(value: str | datetime | None) -> str | None:
    """An ISO date or datetime (naive = UTC) as the store's timestamp text, None passes."""
    if value is None or isinstance(value, datetime):
        return None if value is None else utc_iso(value)
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise ExportFormatError(f"since must be an ISO date or time like 2025-01-31, not {value!r}") from exc
    return utc_iso(moment)


class Connection:
    """One database file: its thread-local connections, the write lock and the disk's faults.
    ``Store`` adds the verbs; create it with ``Store.open(path)``."""

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

    @classmethod
    def open(
        cls,
        path: str | Path,
        config: StoreConfig | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> Self:
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

    def __enter__(self) -> Self:
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
        return utc_iso(self._clock())
