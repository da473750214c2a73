"""Faults (issue 8): ``python app.py`` killed with SIGKILL in the middle of labeling, a disk that
fills up, a database that is or becomes read-only, exports that cannot be written.

What is promised (README, "Faults"): after a crash the database passes its integrity check and
every label the app acknowledged is there with its last acknowledged verdict; a label is stored
whole or not at all; a full or read-only disk gives a one-line error that says what to do, the
app keeps serving, nothing saved before is lost, and labeling works again once the disk is fixed.

The faults are real where the test may mount file systems (root with CAP_SYS_ADMIN): a small
tmpfs holding the database is filled up, remounted read-only, or covered by a read-only bind
mount while the app runs. Elsewhere (or with STUDIO_TEST_NO_MOUNT=1) the same scenarios run with
stand-ins, never a skip: the app's file size limit (RLIMIT_FSIZE, set on the running process)
stands in for a full disk, so SQLite reports an I/O error and the message is the I/O one (the
SQLITE_FULL message itself is checked in tests/store/test_faults.py); file modes stand in
for a read-only disk, with the app (and CLI) run without CAP_DAC_OVERRIDE when the tests run
as root, so that the modes bind them.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import random
import re
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from gradio_client.exceptions import AppError

from annotation_db import VERDICTS, Store
from testkit.app_process import REPO
from tests.app.conftest import base_config, make_trace

pytestmark = pytest.mark.slow

TRACES = ("t0", "t1", "t2")
N_STEPS = 6
BIG = "x" * 9000  # a long comment: every label needs new pages of the database

FULL_DB = (
    r"the disk holding .*annotations\.db is full, so nothing was saved; free some space there, then try again"
)
IO_DB = (
    r"cannot write .*annotations\.db \(disk I/O error\), so nothing was saved; check its disk "
    r"\(free space, errors\) and that the file is still there, then try again"
)
OPEN_READ_ONLY = (
    r".*annotations\.db is open read-only \((read-only file system|permission denied): [^)]+\), "
    r"so nothing was saved; make the file and its folder writable, then restart"
)
BECAME_READ_ONLY = (
    r".*annotations\.db cannot be written \(attempt to write a readonly database\), "
    r"so nothing was saved; make the file and its folder writable, then restart"
)


# ---------------------------------------------------------------------- the disk under the database


@functools.cache
def can_mount() -> bool:
    """Whether this test may mount a tmpfs (root with CAP_SYS_ADMIN); STUDIO_TEST_NO_MOUNT=1
    says no, to run the stand-ins."""
    if os.environ.get("STUDIO_TEST_NO_MOUNT") or os.geteuid() != 0 or not shutil.which("mount"):
        return False
    probe = tempfile.mkdtemp(prefix="studio-mount-probe-")
    try:
        if subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", probe], capture_output=True
        ).returncode:
            return False
        subprocess.run(["umount", probe], check=True)
        return True
    finally:
        os.rmdir(probe)


def _drop_dac_override() -> None:
    """In a child before exec: drop CAP_DAC_OVERRIDE from the bounding set, so that root's
    program obeys file modes (PR_CAPBSET_DROP = 24, CAP_DAC_OVERRIDE = 1)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(24, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE)")


def _sh(*argv: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(argv)}: {result.stderr}"


@dataclass
class Disk:
    """A folder holding the database that a test fills up or makes read-only: its own tmpfs
    where mounting works (``real``), else a plain folder and the stand-ins of the module doc."""

    path: Path
    real: bool
    filler: Path | None = None
    limited: list[int] = field(default_factory=list)  # pids given a file size limit
    bound: bool = False  # a read-only bind mount covers the folder

    def __post_init__(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        if self.real:
            _sh("mount", "-t", "tmpfs", "-o", "size=8m,mode=0755", "tmpfs", str(self.path))

    @property
    def preexec(self):
        """What programs using this disk run first: as root without a real disk, give up the
        capability that ignores file modes (read-only stand-in)."""
        return None if self.real or os.geteuid() != 0 else _drop_dac_override

    def fill(self, pid: int | None = None) -> None:
        """No more room: real, write a file until the disk is full; else cap the size of any
        file the process ``pid`` writes a little above the largest file on the disk now (the
        database's files cannot grow much more: a label soon needs more)."""
        if self.real:
            self.filler = self.path / "filler"
            with open(self.filler, "wb") as out:
                try:
                    while True:
                        out.write(b"\0" * (1 << 16))
                        out.flush()
                except OSError:
                    pass
            return
        sizes = [p.stat().st_size for p in self.path.iterdir() if p.is_file()]
        soft = max([*sizes, 256 << 10]) + (64 << 10)
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (soft, resource.RLIM_INFINITY))
        self.limited.append(pid)

    def free(self) -> None:
        if self.filler is not None:
            self.filler.unlink()
            self.filler = None
        for pid in self.limited:
            with contextlib.suppress(ProcessLookupError):
                resource.prlimit(pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        self.limited.clear()

    def make_read_only(self, *, live: bool = False) -> None:
        """Read-only from now on. Real: remount the tmpfs read-only, or with ``live`` (files
        open in a running app: a remount would be refused) cover the folder with a read-only
        bind mount, which new opens go through. Else: file modes."""
        if self.real and live:
            _sh("mount", "--bind", str(self.path), str(self.path))
            _sh("mount", "-o", "remount,bind,ro", str(self.path))
            self.bound = True
        elif self.real:
            _sh("mount", "-o", "remount,ro", str(self.path))
        else:
            self._modes(folder=0o555, file=0o444)

    def make_writable(self) -> None:
        if self.bound:
            _sh("umount", str(self.path))
            self.bound = False
        elif self.real:
            _sh("mount", "-o", "remount,rw", str(self.path))
        else:
            self._modes(folder=0o755, file=0o644)

    def _modes(self, folder: int, file: int) -> None:
        for root, folders, files in os.walk(self.path):
            for name in files:
                os.chmod(os.path.join(root, name), file)
            for name in folders:
                os.chmod(os.path.join(root, name), folder)
        self.path.chmod(folder)

    def cleanup(self) -> None:
        self.free()
        if self.real:
            for _ in range(2 if self.bound else 1):  # the bind mount over it first, then the tmpfs
                if subprocess.run(["umount", str(self.path)], capture_output=True).returncode:
                    subprocess.run(["umount", "-l", str(self.path)], capture_output=True)
        else:
            self.make_writable()


@pytest.fixture
def disk(tmp_path):
    """(Tests list it before ``app_process``, so that their apps stop before it is unmounted.)"""
    disk = Disk(tmp_path / "disk", real=can_mount())
    try:
        yield disk
    finally:
        disk.cleanup()


def launch(app_process, disk: Disk | None, db: Path):
    """``python app.py --label-only`` on ``db``, as the disk's programs run."""
    return app_process("--label-only", db=db, preexec=disk.preexec if disk else None)


# ---------------------------------------------------------------------- the database, read directly


def seed(db: Path, labels=(), text: str = "") -> None:
    """Three traces of six steps (their texts end in ``text``), and ``labels`` (annotator,
    trace, step, verdict, comment)."""
    with Store.open(db) as store:
        for n, trace_id in enumerate(TRACES):
            texts = [f"step {k} of {trace_id}{text}" for k in range(N_STEPS)]
            store.add_trace(make_trace(trace_id, texts, clip_sha=str(n) * 64))
        for who, trace_id, k, verdict, comment in labels:
            store.set_label(who, trace_id, k, verdict, comment=comment)


def check_db(db: Path) -> dict[tuple[str, str, int], tuple[str, str]]:
    """The database is sound and every label whole: (annotator, trace, step) -> (verdict,
    comment) of the current step labels. Whole: each label is the state its item's latest
    history event left, and an item whose latest event left it unlabeled has no label."""
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        latest = conn.execute(
            """SELECT e.annotator, s.trace_id, s.idx, e.id, e.verdict, e.comment
               FROM label_events e JOIN steps s ON s.id = e.step_id
               WHERE e.alternative_id IS NULL AND e.id = (
                   SELECT max(m.id) FROM label_events m
                   WHERE m.step_id = e.step_id AND m.annotator = e.annotator AND m.alternative_id IS NULL)"""
        ).fetchall()
        labels = conn.execute(
            """SELECT l.annotator, s.trace_id, s.idx, l.event_id, l.verdict, l.comment
               FROM labels l JOIN steps s ON s.id = l.step_id WHERE l.alternative_id IS NULL"""
        ).fetchall()
    finally:
        conn.close()
    current = {(a, t, k): (e, v, c) for a, t, k, e, v, c in labels}
    assert current == {(a, t, k): (e, v, c) for a, t, k, e, v, c in latest if v is not None}
    return {key: (v, c) for key, (_, v, c) in current.items()}


def one_line(exc: AppError) -> str:
    message = str(exc)
    assert message and "\n" not in message and "Traceback" not in message, message
    assert "unexpected error" not in message, message
    return message


# ---------------------------------------------------------------------- SIGKILL in the middle of labeling


@dataclass
class Labeler:
    """One annotator labeling as fast as the app answers: accept / reject / unsure on random
    steps, and now and then an undo of the step just labeled. ``stacks`` holds, per step, the
    states the app acknowledged (a label call that returned: the verdict and comment sent; an
    undo that returned: the state it says it went back to), newest last, so that an undo pops.
    ``pending`` is the request in flight: (step, the state it would leave)."""

    name: str
    client: object
    rng: random.Random
    stacks: dict[tuple[str, int], list[tuple[str, str]]] = field(default_factory=dict)
    pending: tuple | None = None
    acked: int = 0
    undone: int = 0
    errors: list[str] = field(default_factory=list)

    def state(self, key):
        stack = self.stacks.get(key)
        return stack[-1] if stack else None

    def run(self, stop: threading.Event, killed: threading.Event) -> None:
        last = None
        seq = 0
        while not stop.is_set():
            seq += 1
            try:
                if last is not None and self.stacks.get(last) and self.rng.random() < 0.25:
                    self._undo(last)
                else:
                    last = self._label(seq)
            except Exception as exc:  # noqa: BLE001 - a refused or broken request
                if not killed.is_set():
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                return  # after the kill: the request in flight stays pending
            self.pending = None
            self.acked += 1

    def _label(self, seq: int) -> tuple[str, int]:
        trace_id, k = self.rng.choice(TRACES), self.rng.randrange(N_STEPS)
        verdict = self.rng.choice(VERDICTS)
        comment = f"{self.name}#{seq}"
        self.pending = ((trace_id, k), (verdict, comment))
        out = self.client.predict(
            self.name, trace_id, k, "hallucination" if verdict == "reject" else "", comment, True,
            api_name=f"/{verdict}",
        )  # fmt: skip
        if not out[6].startswith(f"Step {k + 1}: {verdict}"):
            self.errors.append(f"label answered {out[6]!r}")
        self.stacks.setdefault((trace_id, k), []).append((verdict, comment))
        return trace_id, k

    def _undo(self, key: tuple[str, int]) -> None:
        trace_id, k = key
        stack = self.stacks[key]
        after = stack[-2] if len(stack) > 1 else None
        self.pending = (key, after)
        out = self.client.predict(self.name, trace_id, k, True, api_name="/undo")
        expected = f"Undone on step {k + 1}: now {after[0] if after else 'unlabeled'}"
        if out[6] != expected:
            self.errors.append(f"undo answered {out[6]!r}, expected {expected!r}")
        stack.pop()
        self.undone += 1

    def check(self, stored: dict) -> None:
        """Every acknowledged state is stored; the request in flight at the kill either is too
        or left the step as it was; nothing else of this annotator's is stored."""
        pending_key = self.pending[0] if self.pending else None
        for key in {*self.stacks, *([pending_key] if pending_key else [])}:
            allowed = [self.state(key)]
            if key == pending_key:
                allowed.append(self.pending[1])
            got = stored.get((self.name, *key))
            assert got in allowed, f"{self.name} {key}: stored {got}, acknowledged {allowed[0]}"
        mine = {(t, k) for who, t, k in stored if who == self.name}
        assert mine <= {*self.stacks, pending_key}

    def settle(self, stored: dict) -> bool:
        """After ``check``: take the request in flight at the kill as acknowledged if it was
        stored, else as never sent (later checks are then exact). Returns whether it was stored."""
        if self.pending is None:
            return False
        key, state = self.pending
        self.pending = None
        if stored.get((self.name, *key)) != state or state == self.state(key):
            return False
        stack = self.stacks.setdefault(key, [])
        if state is None or (len(stack) > 1 and stack[-2] == state):  # an undo (comments are unique)
            stack.pop()
        else:
            stack.append(state)
        return True


def label_then_kill(app, names: list[str], acks: int, seed_: int) -> list[Labeler]:
    """Labelers hammer the app until ``acks`` labels are acknowledged, then SIGKILL it."""
    rng = random.Random(seed_)
    labelers = [Labeler(name, app.client(), random.Random(rng.random())) for name in names]
    stop, killed = threading.Event(), threading.Event()
    threads = [threading.Thread(target=lab.run, args=(stop, killed), daemon=True) for lab in labelers]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while sum(lab.acked for lab in labelers) < acks and time.monotonic() < deadline:
        assert all(thread.is_alive() for thread in threads), [lab.errors for lab in labelers]
        time.sleep(0.01)
    killed.set()
    app.kill()
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads), "a client hung after the kill"
    assert [e for lab in labelers for e in lab.errors] == []
    assert sum(lab.acked for lab in labelers) >= acks
    assert any(lab.pending for lab in labelers)  # the kill cut requests off in flight
    return labelers


def test_sigkill_mid_labeling_loses_no_acknowledged_label(app_process, tmp_path):
    db = tmp_path / "annotations.db"
    seed(db)
    everyone: list[Labeler] = []
    for round_ in (1, 2):  # killed twice: the second crash must not undo the first recovery
        app = launch(app_process, None, db)
        names = [f"r{round_}-annotator{n}" for n in range(6)]
        this_round = label_then_kill(app, names, acks=60, seed_=round_)
        everyone += this_round
        restarted = launch(app_process, None, db)  # recovers the database on the same file
        stored = check_db(db)
        for labeler in everyone:  # the earlier round's labels too: still there after this crash
            labeler.check(stored)
        in_flight = sum(lab.pending is not None for lab in this_round)
        stored_in_flight = sum(lab.settle(stored) for lab in this_round)
        print(
            f"round {round_}: {sum(lab.acked for lab in this_round)} acknowledged "
            f"({sum(lab.undone for lab in this_round)} undos); {in_flight} in flight at the kill, "
            f"{stored_in_flight} of them stored"
        )
        # the restarted app serves what was acknowledged, and takes new labels
        client = restarted.client()
        labeler = max(everyone, key=lambda lab: lab.acked)
        (trace_id, k), (verdict, _) = next((key, s[-1]) for key, s in labeler.stacks.items() if s)
        steps_html = client.predict(labeler.name, trace_id, k, True, api_name="/show_step")[0]
        assert f"labeled-{verdict}" in steps_html
        out = client.predict("after-restart", "t0", 0, "", "", True, api_name="/accept")
        assert out[6].startswith("Step 1: accept")
        restarted.stop()
    assert sum(lab.acked for lab in everyone) >= 120


# ---------------------------------------------------------------------- a full disk


def test_a_full_disk_is_a_clear_error_the_app_keeps_serving_and_recovers(disk, app_process, monkeypatch):
    db = disk.path / "annotations.db"
    seed(db, labels=[("alice", "t0", 0, "reject", "before the disk filled")])
    exports = disk.path / "tmp"
    exports.mkdir()
    monkeypatch.setenv("TMPDIR", str(exports))  # the app's exports go to the same disk
    app = launch(app_process, disk, db)
    client = app.client()
    acked = {("alice", "t0", 0): ("reject", "before the disk filled")}
    client.predict("bob", "t1", 1, "", "while there was room", True, api_name="/accept")
    acked[("bob", "t1", 1)] = ("accept", "while there was room")

    disk.fill(app.pid)
    # The write-ahead log may still have room for a label or two; each is stored or refused.
    message = None
    for i in range(60):
        trace_id, k = TRACES[i % 3], i % N_STEPS
        try:
            client.predict("bob", trace_id, k, "", f"{i} {BIG}", True, api_name="/unsure")
        except AppError as exc:
            message = one_line(exc)
            break
        acked[("bob", trace_id, k)] = ("unsure", f"{i} {BIG}")
    assert message is not None, "the disk never filled up"
    assert re.fullmatch(FULL_DB if disk.real else IO_DB, message), message

    # The app keeps serving: reads work, every write is refused the same way.
    out = client.predict("alice", "t0", 0, True, api_name="/show_step")
    assert "labeled-reject" in out[0]
    client.predict("alice", True, "max_score", api_name="/queue")
    client.predict(api_name="/dashboard")
    with pytest.raises(AppError) as again:
        client.predict("carol", "t2", 3, "other", BIG, True, api_name="/reject")
    assert re.fullmatch(FULL_DB if disk.real else IO_DB, one_line(again.value))
    if disk.real:  # an export, and an analysed clip kept, on the full disk: clear errors too
        with pytest.raises(AppError) as export_error:
            client.predict("trl-stepwise", "jsonl", 0, "", "", api_name="/export")
        assert re.fullmatch(
            r"the disk holding .* is full, so no export was written; free some space there or export to "
            r"another folder \(the app exports to TMPDIR, now .*\)",
            one_line(export_error.value),
        )
        keep_clip_on_a_full_disk(db, disk.path / "clips")
    stored = check_db(db)
    assert {key: stored.get(key) for key in acked} == acked  # nothing saved before is lost

    disk.free()
    client.predict("carol", "t2", 3, "other", "after space was freed", True, api_name="/reject")
    path, _ = client.predict("trl-stepwise", "jsonl", 0, "", "", api_name="/export")
    assert Path(path).is_file()
    stored = check_db(db)
    assert stored[("carol", "t2", 3)] == ("reject", "after space was freed")
    assert {key: stored[key] for key in acked} == acked
    assert app.alive()
    assert re.search(FULL_DB if disk.real else IO_DB, app.log())  # the operator sees it in the log


def keep_clip_on_a_full_disk(db: Path, media_dir: Path) -> None:
    """An analysis keeps its clip in the media folder before it stores the trace: on a full
    disk that is a one-line error too, and no partial clip is left (in-process: cheap)."""
    from ui.services import AppError as StudioError
    from ui.services import Studio

    upload = db.parent.parent / "upload.mp4"  # off the full disk
    upload.write_bytes(os.urandom(256 << 10))
    studio = Studio(base_config(db.parent.parent, label_only=True, db=str(db), media_dir=str(media_dir)))
    try:
        with pytest.raises(StudioError) as refused:
            studio.keep_clip(str(upload), "f" * 64)
    finally:
        studio.close()
    assert re.fullmatch(
        r"the disk holding .*clips is full, so the analysis was not saved; free some space there, then analyse again",
        str(refused.value),
    )
    assert list(media_dir.iterdir()) == []


# ---------------------------------------------------------------------- a read-only database


def test_a_read_only_database_is_served_for_reading_and_refuses_labels_clearly(disk, app_process):
    db = disk.path / "annotations.db"
    seed(db, labels=[("alice", "t0", 0, "reject", "labeled before")])
    disk.make_read_only()
    app = launch(app_process, disk, db)
    assert re.search(r"annotations\.db is open read-only \(.*\): labels cannot be saved", app.log())
    # the page says so before anyone labels (a banner above everything)
    page_config = urllib.request.urlopen(app.url + "config", timeout=30).read().decode()
    assert "Read-only database:" in page_config and "labels are not saved" in page_config
    client = app.client()
    # reads: the label view, the queue, the dashboard, an export
    assert "labeled-reject" in client.predict("alice", "t0", 0, True, api_name="/show_step")[0]
    table, _ = client.predict("alice", False, "max_score", api_name="/queue")
    assert {row[0] for row in table["data"]} == set(TRACES)
    client.predict(api_name="/dashboard")
    path, _ = client.predict("trl-stepwise", "jsonl", 0, "", "", api_name="/export")
    assert Path(path).read_text(encoding="utf-8").count("\n") == 1
    # every write: one line, nothing saved, what to do
    for call in (
        ("alice", "t0", 1, "", "", True, "/accept"),
        ("bob", "t1", 0, "hallucination", "", True, "/reject"),
        ("alice", "t0", 0, True, "/undo"),
    ):
        with pytest.raises(AppError) as refused:
            client.predict(*call[:-1], api_name=call[-1])
        assert re.fullmatch(OPEN_READ_ONLY, one_line(refused.value))
    # the command line says the same, exit 2
    cli = run_cli(
        disk,
        "--db",
        str(db),
        "label",
        "--annotator",
        "bob",
        "--trace",
        "t1",
        "--step",
        "0",
        "--verdict",
        "accept",
    )
    assert cli.returncode == 2 and cli.stdout == ""
    assert re.fullmatch(f"error: {OPEN_READ_ONLY}\n", cli.stderr), cli.stderr
    fresh = run_cli(disk, "--db", str(disk.path / "new.db"), "migrate")  # a new database there: no
    assert fresh.returncode == 2 and re.fullmatch(
        r"error: cannot create .*new\.db \((read-only file system|permission denied): its folder\); "
        r"pass a --db in a folder you can write to\n",
        fresh.stderr,
    ), fresh.stderr
    app.stop()

    disk.make_writable()
    app = launch(app_process, disk, db)
    app.client().predict("bob", "t1", 0, "", "now it is writable", True, api_name="/accept")
    stored = check_db(db)
    assert stored[("alice", "t0", 0)] == ("reject", "labeled before")
    assert stored[("bob", "t1", 0)] == ("accept", "now it is writable")


def test_a_database_becoming_read_only_while_the_app_runs(disk, app_process):
    """Connections the app opened before keep writing (their files stay open for writing), new
    ones are read-only: each label is then stored, or refused with the read-only line; after a
    crash and restart on the read-only database, reads work and labels are refused; once
    writable again, every acknowledged label is there."""
    db = disk.path / "annotations.db"
    seed(db)
    app = launch(app_process, disk, db)
    acked = {}
    client = app.client()
    for k in range(3):
        client.predict("alice", "t0", k, "", f"before {k}", True, api_name="/accept")
        acked[("alice", "t0", k)] = ("accept", f"before {k}")

    disk.make_read_only(live=True)
    outcomes: list[tuple[tuple, str | None]] = []

    def burst(n: int) -> None:  # more requests at once than the app has threads yet: new ones
        c = app.client()
        key = (f"burst{n}", TRACES[n % 3], n % N_STEPS)
        try:
            c.predict(key[0], key[1], key[2], "", f"during {n}", True, api_name="/unsure")
            outcomes.append((key, None))
        except AppError as exc:
            outcomes.append((key, one_line(exc)))
        c.predict(key[0], key[1], key[2], True, api_name="/show_step")  # reads keep working

    threads = [threading.Thread(target=burst, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(outcomes) == 16
    refused = sum(error is not None for _, error in outcomes)
    print(f"while becoming read-only: {16 - refused} labels stored, {refused} refused")
    for key, error in outcomes:
        if error is None:
            acked[key] = ("unsure", f"during {key[0][5:]}")
        else:
            assert re.fullmatch(BECAME_READ_ONLY, error), error

    app.kill()  # a crash while read-only: the write-ahead log is left behind
    app = launch(app_process, disk, db)
    client = app.client()
    assert "labeled-accept" in client.predict("alice", "t0", 2, True, api_name="/show_step")[0]
    with pytest.raises(AppError) as refused:
        client.predict("alice", "t0", 3, "", "", True, api_name="/accept")
    assert re.fullmatch(OPEN_READ_ONLY, one_line(refused.value))
    app.stop()

    disk.make_writable()
    app = launch(app_process, disk, db)
    app.client().predict("alice", "t0", 3, "", "writable again", True, api_name="/accept")
    stored = check_db(db)
    assert {key: stored.get(key) for key in acked} == acked
    assert [key for key, error in outcomes if error and key in stored] == []  # "nothing was saved"
    assert stored[("alice", "t0", 3)] == ("accept", "writable again")


# ---------------------------------------------------------------------- exports that cannot be written


def run_cli(disk: Disk | None, *argv: str, fsize: int | None = None) -> subprocess.CompletedProcess:
    """``python -m annotation_db ARGV`` as the disk's programs run (``fsize``: a file size limit)."""

    def before() -> None:
        if disk is not None and disk.preexec is not None:
            disk.preexec()
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, resource.RLIM_INFINITY))

    return subprocess.run(
        [sys.executable, "-m", "annotation_db", *argv],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=before,
    )


def test_cli_export_to_a_full_or_read_only_folder_is_one_line_and_exit_2(disk, tmp_path):
    db = tmp_path / "annotations.db"  # the database is fine; the export folder's disk is not
    # long steps: the export (~170 kB) is more than the stand-in's file size limit
    verdicts = ["accept"] * (N_STEPS - 1) + ["reject"]
    seed(db, labels=[("alice", t, k, verdicts[k], "") for t in TRACES for k in range(N_STEPS)], text=BIG)
    out = disk.path / "exports" / "steps.jsonl"
    out.parent.mkdir()
    export = ("--db", str(db), "export", "--format", "trl-stepwise", "--out", str(out))

    if disk.real:
        disk.fill()
    full = run_cli(disk, *export, fsize=None if disk.real else 64 << 10)
    assert full.returncode == 2 and full.stdout == "", full.stderr
    if disk.real:
        expected = r"error: the disk holding .*exports is full, so no export was written; free some space there or export to another folder\n"
    else:  # the file size limit: the system's own words for it
        expected = r"error: cannot write .*steps\.jsonl \(File too large\); export to another folder\n"
    assert re.fullmatch(expected, full.stderr), full.stderr
    assert list(out.parent.iterdir()) == []  # no half-written file left behind
    disk.free()

    disk.make_read_only()
    refused = run_cli(disk, *export)
    assert refused.returncode == 2 and refused.stdout == ""
    assert re.fullmatch(
        r"error: cannot write to .*exports \((Read-only file system|Permission denied)\); "
        r"export to a folder you can write to\n",
        refused.stderr,
    ), refused.stderr
    disk.make_writable()

    done = run_cli(disk, *export)
    assert done.returncode == 0, done.stderr
    assert out.read_text(encoding="utf-8").count("\n") == len(TRACES)
