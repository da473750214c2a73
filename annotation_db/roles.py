"""Who may do what: the roles annotator, reviewer and admin, and the auth file that assigns them.

- **annotator**: labels steps and alternatives (only their own labels; ``LabelOwnershipError``).
- **reviewer**: everything an annotator does, plus the review view: sees every annotator's
  labels side by side, sets an item's final verdict or sends it back with a note.
- **admin**: everything a reviewer does, plus setting roles; sees everything (quality figures).

Without a login everyone is an annotator (``effective_role``): a typed-in name proves nothing,
so a stored reviewer role only counts for a signed-in user. The role lives in the
``annotators.role`` column (every change in the append-only ``role_events``); the store's review
verbs check it, so the server enforces it whatever the page shows.

Auth file (``--auth-file``): one ``name:password`` or ``name:password:role`` per line; blank
lines and ``#`` comments are skipped. The role is the text after the last colon when that text is
a role name, so a password may contain colons; a password that itself ends in ``:reviewer`` (or
another role name) needs the role written out (``alice:pw:reviewer:annotator``).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from sqlite_utils import Database

from annotation_db.errors import AuthFileError, InvalidRoleError, PermissionDeniedError
from annotation_db.migrations import ROLES

DEFAULT_ROLE = "annotator"

# Action -> roles allowed. "label": set/undo one's own labels; "review": see everyone's labels
# on the review queue, adjudicate, send back; "see_all": the quality figures per annotator;
# "set_roles": change anyone's role.
PERMISSIONS: dict[str, tuple[str, ...]] = {
    "label": ("annotator", "reviewer", "admin"),
    "review": ("reviewer", "admin"),
    "see_all": ("reviewer", "admin"),
    "set_roles": ("admin",),
}


class AuthEntry(NamedTuple):
    name: str
    password: str
    role: str


def check_role(role: object) -> str:
    if role not in ROLES:
        raise InvalidRoleError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    return str(role)


def can(role: str, action: str) -> bool:
    """Whether ``role`` may do ``action`` (one of ``PERMISSIONS``)."""
    if action not in PERMISSIONS:
        raise ValueError(f"unknown action {action!r}; one of {', '.join(PERMISSIONS)}")
    return role in PERMISSIONS[action]


def require(name: str, role: str, action: str) -> None:
    """PermissionDeniedError unless ``role`` may do ``action``."""
    if not can(role, action):
        allowed = " and ".join(f"{r}s" for r in PERMISSIONS[action])
        raise PermissionDeniedError(
            f"{name} is {_article(role)} {role}; only {allowed} can {action.replace('_', ' ')}; "
            "ask an admin for that role"
        )


def effective_role(stored_role: str | None, *, signed_in: bool) -> str:
    """The role that counts: the stored one for a signed-in user, else annotator."""
    return stored_role if signed_in and stored_role in ROLES else DEFAULT_ROLE


def parse_auth_line(line: str, where: str = "line") -> AuthEntry | None:
    """One auth-file line as (name, password, role); None for a blank line or a comment."""
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    name, sep, rest = line.partition(":")
    role = DEFAULT_ROLE
    password, sep_role, last = rest.rpartition(":")
    if sep_role and last.strip() in ROLES:
        role = last.strip()
    else:
        password = rest
    if not sep or not name.strip() or not password:
        raise AuthFileError(f"{where} is not name:password or name:password:role; fix that line")
    return AuthEntry(name.strip(), password, role)


def read_auth_file(path: str | Path) -> tuple[AuthEntry, ...]:
    """Every entry of an auth file. AuthFileError if unreadable, malformed or empty."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise AuthFileError(f"cannot read the auth file {path}: {exc.strerror}; check --auth-file") from exc
    entries = []
    for number, line in enumerate(lines, 1):
        entry = parse_auth_line(line, f"{path} line {number}")
        if entry is not None:
            entries.append(entry)
    if not entries:
        raise AuthFileError(f"{path} holds no name:password line; add one or drop --auth-file")
    names = [e.name for e in entries]
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise AuthFileError(f"{path} names {doubled[0]} twice; keep one line per name")
    return tuple(entries)


# ---------------------------------------------------------------------- database (one transaction)


def stored_role(db: Database, name: str) -> str:
    """The role stored for ``name`` (annotator when the name is unknown)."""
    row = db.execute("SELECT role FROM annotators WHERE name = ?", [name]).fetchone()
    return DEFAULT_ROLE if row is None else row[0]


def write_role(db: Database, name: str, role: str, set_by: str | None, now: str) -> bool:
    """Store ``role`` for ``name`` (creating the annotator); True when it changed."""
    db.execute("INSERT OR IGNORE INTO annotators (name, created_at) VALUES (?, ?)", [name, now])
    if stored_role(db, name) == role:
        return False
    db.execute("UPDATE annotators SET role = ? WHERE name = ?", [role, name])
    db.execute(
        "INSERT INTO role_events (annotator, role, set_by, at) VALUES (?, ?, ?, ?)", [name, role, set_by, now]
    )
    return True


def _article(role: str) -> str:
    return "an" if role[0] in "aeiou" else "a"
