"""Labels on a Space: the database defaults to persistent storage when it is mounted, the page
and the log say so when it is not, and a consistent backup can be downloaded while the app serves.
A tmp folder stands in for /data (STUDIO_PERSISTENT_DIR)."""

from __future__ import annotations

import logging
import sqlite3
import threading
from dataclasses import replace

import pytest

from ui.config import LABELS_LOST_WARNING, AppConfig, parse_config


def space_env(persistent, **more) -> dict[str, str]:
    return {
        "SPACE_ID": "someone/studio",
        "SYSTEM": "spaces",
        "STUDIO_PERSISTENT_DIR": str(persistent),
        **more,
    }


def test_space_with_persistent_storage_keeps_database_and_clips_there(tmp_path):
    config = parse_config([], space_env(tmp_path))
    assert (config.db, config.storage_warning) == (str(tmp_path / "annotations.db"), None)
    assert config.media_root == tmp_path / "clips"


def test_space_without_persistent_storage_warns(tmp_path):
    config = parse_config([], space_env(tmp_path / "not-mounted"))
    assert (config.db, config.storage_warning) == (AppConfig.db, LABELS_LOST_WARNING)


def test_space_db_outside_persistent_storage_warns_inside_does_not(tmp_path):
    outside = parse_config(["--db", "/tmp/x/a.db"], space_env(tmp_path))
    assert (outside.db, outside.storage_warning) == ("/tmp/x/a.db", LABELS_LOST_WARNING)
    inside = parse_config([], space_env(tmp_path, STUDIO_DB=str(tmp_path / "team.db")))
    assert (inside.db, inside.storage_warning) == (str(tmp_path / "team.db"), None)


def test_either_space_variable_is_enough_and_off_space_nothing_changes(tmp_path):
    assert parse_config([], {"SYSTEM": "spaces", "STUDIO_PERSISTENT_DIR": str(tmp_path)}).db == str(
        tmp_path / "annotations.db"
    )
    assert parse_config([], {"SPACE_ID": "a/b", "STUDIO_PERSISTENT_DIR": str(tmp_path)}).db == str(
        tmp_path / "annotations.db"
    )
    assert parse_config([], {"STUDIO_PERSISTENT_DIR": str(tmp_path)}) == AppConfig()


def test_warning_is_logged_and_shown_on_the_page(tmp_path, caplog):
    from ui.storage import announce_storage, storage_banner

    config = parse_config([], space_env(tmp_path / "not-mounted"))
    with caplog.at_level(logging.WARNING, logger="ui.storage"):
        announce_storage(config)
    assert [r.getMessage() for r in caplog.records] == [f"{LABELS_LOST_WARNING} (database: {AppConfig.db})"]
    assert LABELS_LOST_WARNING in storage_banner(config)
    assert storage_banner(parse_config([], space_env(tmp_path))) == ""


def test_admin_flags_and_who_may_download():
    from ui.storage import backup_refusal

    local = AppConfig()
    assert backup_refusal(local, None, environ={}) is None
    assert "no login" in backup_refusal(local, None, environ={"SPACE_ID": "a/b"})
    login = replace(local, auth_pairs=(("ann", "pw"), ("bob", "pw")))
    assert backup_refusal(login, None, environ={}) == "sign in to download the database backup"
    assert backup_refusal(login, "bob", environ={}) is None
    admins = parse_config(["--admin", "ann"], {"STUDIO_ADMINS": "carol"}).admins
    assert admins == ("carol", "ann")
    only_ann = replace(login, admins=("ann",))
    assert backup_refusal(only_ann, "ann", environ={}) is None
    assert (
        backup_refusal(only_ann, "bob", environ={})
        == "only ann may download the database backup (--admin, or role admin in --auth-file)"
    )


def test_backup_is_consistent_while_labels_are_written(tmp_path):
    """A writer commits rows in pairs the whole time; every backup holds whole pairs only, and
    the last one everything committed before it started."""
    from annotation_db.backup import backup_database

    db = tmp_path / "live.db"
    conn = sqlite3.connect(db, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE labels (pair INTEGER, half INTEGER)")
    conn.commit()
    stop = threading.Event()

    def write() -> None:
        pair = 0
        while not stop.is_set():
            with conn:
                conn.executemany("INSERT INTO labels VALUES (?, ?)", [(pair, 0), (pair, 1)])
            pair += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        counts = []
        for i in range(5):
            out = backup_database(db, tmp_path / f"copy{i}.db")
            copy = sqlite3.connect(out)
            rows = copy.execute("SELECT COUNT(*), COUNT(DISTINCT pair) FROM labels").fetchone()
            assert copy.execute("PRAGMA journal_mode").fetchone() == ("delete",)
            copy.close()
            assert rows[0] == 2 * rows[1]
            counts.append(rows[0])
    finally:
        stop.set()
        writer.join()
    committed = conn.execute("SELECT COUNT(*) FROM labels").fetchone()[0]
    final = sqlite3.connect(backup_database(db, tmp_path / "final.db"))
    assert final.execute("SELECT COUNT(*) FROM labels").fetchone()[0] == committed
    assert counts == sorted(counts) and counts[-1] > 0


def test_backup_errors_are_one_line(tmp_path):
    from annotation_db.backup import BackupError, backup_database

    with pytest.raises(BackupError, match=r"does not exist: nothing to back up \(check --db\)$"):
        backup_database(tmp_path / "none.db", tmp_path / "out.db")


def test_backup_through_the_api_as_a_signed_in_admin(tmp_path):
    from tests.app.conftest import base_config, serve, stop

    auth = tmp_path / "users.txt"
    auth.write_text("ann:pw1\nbob:pw2\n")
    config = parse_config(["--auth-file", str(auth), "--admin", "ann"], {})
    config = replace(
        base_config(tmp_path, label_only=True), auth_pairs=config.auth_pairs, admins=config.admins
    )
    app = serve(config)
    try:
        path, status = app.client(auth=("ann", "pw1")).predict(api_name="/backup")
        copy = sqlite3.connect(path)
        tables = {r[0] for r in copy.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"traces", "steps", "labels"} <= tables
        assert status.startswith("Database backup: annotations-")
        with pytest.raises(Exception, match="only ann may download the database backup"):
            app.client(auth=("bob", "pw2")).predict(api_name="/backup")
    finally:
        stop(app)
