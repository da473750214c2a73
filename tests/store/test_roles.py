"""Roles: the auth file's role column, stored roles with history, and what each role may do."""

from __future__ import annotations

import sqlite3

import pytest

from annotation_db.errors import (
    AuthFileError,
    InvalidAnnotatorError,
    InvalidRoleError,
    LabelOwnershipError,
    PermissionDeniedError,
)
from annotation_db.roles import AuthEntry, can, effective_role, parse_auth_line, read_auth_file


def test_auth_lines_with_and_without_a_role():
    assert parse_auth_line("alice:secret") == AuthEntry("alice", "secret", "annotator")
    assert parse_auth_line(" bob : pw:reviewer ") == AuthEntry("bob", " pw", "reviewer")
    assert parse_auth_line("carol:pw:admin") == AuthEntry("carol", "pw", "admin")
    # A password may hold colons; only a role name after the last colon is a role.
    assert parse_auth_line("dan:a:b:c") == AuthEntry("dan", "a:b:c", "annotator")
    assert parse_auth_line("erin:pw:reviewer:annotator") == AuthEntry("erin", "pw:reviewer", "annotator")
    assert parse_auth_line("frank:reviewer") == AuthEntry("frank", "reviewer", "annotator")
    assert parse_auth_line("   ") is None
    assert parse_auth_line("# comment") is None
    for bad in ("nocolon", ":pw", "gina:", "gina::reviewer"):
        with pytest.raises(AuthFileError, match="is not name:password or name:password:role"):
            parse_auth_line(bad)


def test_read_auth_file(tmp_path):
    path = tmp_path / "users.txt"
    path.write_text("# team\nalice:pw1\n\nbob:pw2:reviewer\n", encoding="utf-8")
    assert read_auth_file(path) == (
        AuthEntry("alice", "pw1", "annotator"),
        AuthEntry("bob", "pw2", "reviewer"),
    )
    path.write_text("alice:pw1\nalice:pw2:admin\n", encoding="utf-8")
    with pytest.raises(AuthFileError, match="names alice twice"):
        read_auth_file(path)
    path.write_text("alice:pw\nbroken\n", encoding="utf-8")
    with pytest.raises(AuthFileError, match=r"users.txt line 2 is not name:password"):
        read_auth_file(path)
    path.write_text("# nobody\n", encoding="utf-8")
    with pytest.raises(AuthFileError, match="holds no name:password line"):
        read_auth_file(path)
    with pytest.raises(AuthFileError, match="cannot read the auth file"):
        read_auth_file(tmp_path / "missing.txt")


def test_permissions_and_the_role_without_a_login():
    assert [r for r in ("annotator", "reviewer", "admin") if can(r, "review")] == ["reviewer", "admin"]
    assert [r for r in ("annotator", "reviewer", "admin") if can(r, "set_roles")] == ["admin"]
    assert all(can(r, "label") for r in ("annotator", "reviewer", "admin"))
    assert effective_role("reviewer", signed_in=True) == "reviewer"
    assert effective_role("reviewer", signed_in=False) == "annotator"  # a typed name proves nothing
    assert effective_role(None, signed_in=True) == "annotator"


def test_roles_are_stored_with_history(store, clock):
    assert store.role("alice") == "annotator"  # unknown: annotator
    assert store.sync_roles([("alice", "annotator"), ("bob", "reviewer"), ("carol", "admin")]) == [
        "bob",
        "carol",
    ]
    assert store.roles() == {"alice": "annotator", "bob": "reviewer", "carol": "admin"}
    assert store.sync_roles([("bob", "reviewer")]) == []  # unchanged: nothing recorded
    clock.set("2025-01-02T00:00:00+00:00")
    assert store.set_role("alice", "reviewer", by="carol") is True
    with pytest.raises(PermissionDeniedError, match="bob is a reviewer; only admins can set roles"):
        store.set_role("alice", "admin", by="bob")
    with pytest.raises(InvalidRoleError, match="role must be one of annotator, reviewer, admin"):
        store.set_role("alice", "boss")
    with pytest.raises(InvalidAnnotatorError):
        store.set_role(" ", "admin")
    rows = store.db.execute("SELECT annotator, role, set_by, at FROM role_events ORDER BY id").fetchall()
    assert rows == [
        ("bob", "reviewer", None, "2025-01-01T00:00:00.000000+00:00"),
        ("carol", "admin", None, "2025-01-01T00:00:00.000000+00:00"),
        ("alice", "reviewer", "carol", "2025-01-02T00:00:00.000000+00:00"),
    ]
    with pytest.raises(sqlite3.IntegrityError, match="role history is append-only"):
        store.db.execute("DELETE FROM role_events")
    with pytest.raises(sqlite3.IntegrityError):
        store.db.execute("UPDATE annotators SET role = 'boss' WHERE name = 'alice'")


def test_an_annotator_cannot_adjudicate_and_nobody_edits_anothers_label(store, make_trace):
    store.add_trace(make_trace("t1", ["a", "b"]))
    store.sync_roles([("alice", "annotator"), ("rita", "reviewer")])
    label = store.set_label("alice", "t1", 0, "reject", error_type="hallucination")
    for verb in (
        lambda: store.adjudicate("alice", "t1", 0, "accept"),
        lambda: store.send_back("alice", "t1", 0, "look again"),
        lambda: store.review_queue("alice"),
        lambda: store.review_item("alice", "t1", 0),
        lambda: store.undo_review("alice", "t1", 0),
    ):
        with pytest.raises(
            PermissionDeniedError, match="alice is an annotator; only reviewers and admins can review"
        ):
            verb()
    # A reviewer decides the item but cannot change alice's label itself.
    with pytest.raises(LabelOwnershipError):
        store.edit_label("rita", label["id"], verdict="accept")
    store.adjudicate("rita", "t1", 0, "accept")
    assert store.label(label["id"])["verdict"] == "reject"
    assert store.db.execute("SELECT count(*) FROM review_events").fetchone()[0] == 1


def test_annotators_of_an_older_database_become_annotators(tmp_path):
    from sqlite_utils import Database

    from annotation_db import Store
    from annotation_db.migrations import migrations

    path = tmp_path / "old.db"
    old = Database(path)
    migrations.apply(old, stop_before="m005_review_roles_and_adjudication")
    old.execute("INSERT INTO annotators (name, created_at) VALUES ('alice', '2024-06-01T00:00:00+00:00')")
    old.conn.commit()
    old.close()
    with Store.open(path) as store:
        assert store.roles() == {"alice": "annotator"}
        assert store.db.execute("SELECT count(*) FROM role_events").fetchone()[0] == 0
        assert store.stats()["review"] == {"decided": 0, "sent_back": 0, "to_review": 0}
