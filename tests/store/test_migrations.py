"""Schema creation and migration: from an empty file, from an older schema, refusing a newer one."""

from __future__ import annotations

import sqlite3

import pytest
from sqlite_utils import Database

from annotation_db import DatabaseOpenError, DatabaseTooNewError, Store
from annotation_db.migrations import migrations

ALL = [
    "m001_initial",
    "m002_alternatives_and_preferences",
    "m003_guards_and_indexes",
    "m004_extra_fields",
    "m005_one_synthdec_question",
    "m006_readable_views",
    "m007_review_roles_and_adjudication",
]


def test_empty_file_gets_every_migration_wal_and_foreign_keys(tmp_path):
    with Store.open(tmp_path / "sub" / "new.db") as store:
        db = store.db
        assert [m.name for m in migrations.applied(db)] == ALL
        assert db.journal_mode == "wal"
        assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert set(db.table_names()) == {
            "_sqlite_migrations",
            "clips",
            "traces",
            "steps",
            "annotators",
            "labels",
            "label_events",
            "alternatives",
            "preferences",
            "preference_events",
            "role_events",
            "review_events",
            "reviews",
            "clip_kinds",
        }
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_reopening_applies_nothing_twice(tmp_path):
    path = tmp_path / "a.db"
    Store.open(path).close()
    with Store.open(path) as store:
        rows = store.db.execute("SELECT name FROM _sqlite_migrations ORDER BY id").fetchall()
    assert [r[0] for r in rows] == ALL


def test_every_thread_connection_enforces_foreign_keys(store):
    import threading

    seen = []
    thread = threading.Thread(
        target=lambda: seen.append(store.db.execute("PRAGMA foreign_keys").fetchone()[0])
    )
    thread.start()
    thread.join()
    assert seen == [1]
    with pytest.raises(sqlite3.IntegrityError):
        store.db.execute("INSERT INTO steps (id, trace_id, idx, text) VALUES (1, 'no-such-trace', 0, 'x')")


def test_older_schema_is_migrated_and_keeps_its_labels(tmp_path):
    """A database at m001 (labels on steps only, no alternatives) opened by today's Store."""
    path = tmp_path / "old.db"
    old = Database(path)
    migrations.apply(old, stop_before="m002_alternatives_and_preferences")
    now = "2024-06-01T00:00:00.000000+00:00"
    old.execute(
        "INSERT INTO clips (sha256, name, path, created_at) VALUES ('abc', 'c.mp4', '/c.mp4', ?)", [now]
    )
    old.execute(
        "INSERT INTO traces (id, seq, clip_sha256, question, prompt_kind, prompt, model, decoding, timings, source, "
        "created_at, schema_version, identity_sha256, imported_at) "
        "VALUES ('t1', 1, 'abc', 'q', 'reasoning', 'P', '{}', '{}', '{}', 'batch', ?, 1, 'x', ?)",
        [now, now],
    )
    old.execute("INSERT INTO steps (id, trace_id, idx, text) VALUES (7, 't1', 0, 'The man runs.')")
    old.execute("INSERT INTO annotators (name, created_at) VALUES ('alice', ?)", [now])
    old.execute(
        "INSERT INTO label_events (id, step_id, annotator, action, verdict, comment, time_spent_s, at) "
        "VALUES (1, 7, 'alice', 'set', 'reject', 'blurry', 3.0, ?)",
        [now],
    )
    old.execute(
        "INSERT INTO labels (id, step_id, annotator, verdict, error_type, comment, time_spent_s, created_at, "
        "updated_at) VALUES (5, 7, 'alice', 'reject', 'hallucination', 'blurry', 3.0, ?, ?)",
        [now, now],
    )
    old.conn.commit()
    old.close()

    with Store.open(path) as store:
        assert [m.name for m in migrations.applied(store.db)] == ALL
        assert store.labels_for_trace("t1") == [
            {
                "id": 5,
                "trace_id": "t1",
                "step_index": 0,
                "item_kind": "step",
                "alternative_id": None,
                "annotator": "alice",
                "verdict": "reject",
                "error_type": "hallucination",
                "comment": "blurry",
                "time_spent_s": 3.0,
                "created_at": now,
                "updated_at": now,
            }
        ]
        # The migrated label is linked to its history: changing then undoing it goes back.
        store.set_label("alice", "t1", 0, "accept")
        assert store.undo_label("alice", "t1", 0)["verdict"] == "reject"
        assert [e["action"] for e in store.label_history("alice", "t1", 0)] == ["set", "set", "undo"]
        # Alternatives work on the migrated database.
        alt = store.add_alternative("alice", "t1", 0, "The man walks.")
        assert (
            store.set_label("alice", "t1", 0, "accept", alternative_id=alt["id"])["item_kind"]
            == "alternative"
        )
        assert store.db.execute("PRAGMA foreign_key_check").fetchall() == []
        assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_database_from_a_newer_version_is_refused(tmp_path):
    path = tmp_path / "a.db"
    Store.open(path).close()
    db = Database(path)
    db["_sqlite_migrations"].insert(
        {"migration_set": "annotation_db", "name": "m999_future", "applied_at": "2030-01-01"}
    )
    db.close()
    with pytest.raises(DatabaseTooNewError, match="m999_future"):
        Store.open(path)


def test_a_file_that_is_not_sqlite_is_a_user_error(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("this is not a database, just some text that is long enough" * 20)
    with pytest.raises(DatabaseOpenError, match="not an annotation database"):
        Store.open(path)


def test_history_tables_refuse_update_and_delete(store, make_trace):
    store.add_trace(make_trace("t1", ["a"]))
    store.set_label("alice", "t1", 0, "accept")
    for sql in ("UPDATE label_events SET verdict = 'reject'", "DELETE FROM label_events"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            store.db.execute(sql)
    with pytest.raises(sqlite3.IntegrityError, match="keeps its annotator"):
        store.db.execute("UPDATE labels SET annotator = 'mallory'")
