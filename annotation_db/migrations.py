"""The schema, created and evolved by ``sqlite_utils.Migrations`` (recorded in ``_sqlite_migrations``).

Migrations are applied in order when a Store opens a database; an old database is migrated,
a new one gets them all. Never edit a migration that has shipped: add the next one.

Schema after the last migration (one row per ...):

- ``clips``: clip, keyed by its content hash ``sha256``; name, path, media facts.
- ``traces``: Trace (id from inference), FK clip; question, options, prompt, model, answer, ...;
  ``identity_sha256`` makes import idempotent; ``seq`` is the import order.
- ``steps``: step (``trace_id``, ``idx``) unique; text, token span, ``score`` (contrastive),
  ``token_kl`` (JSON list), ``top_t``, ``scores`` / ``token_kls`` (JSON), ``expected_correctness``.
- ``alternatives``: candidate replacing a step (FK ``step_id``): text, source model|human,
  settings (JSON), ``expected_correctness``, ``created_by`` (annotator of a human rewrite).
- ``annotators``: a name (the identity) and when it was first seen.
- ``labels``: the current label of one item by one annotator. ``item_kind`` step|alternative;
  ``step_id`` is always the step (for an alternative, the step it replaces); ``alternative_id``
  is NULL for the original step. Unique per (item, annotator).
- ``label_events``: append-only history of every label change (``action`` set|clear|undo, the
  state after it, ``prev_event_id`` = the state that undo returns to). Triggers refuse UPDATE
  and DELETE.
- ``preferences`` / ``preference_events``: an annotator's choice between an alternative and the
  original step (``chosen`` alternative|original), and its append-only history.

Views (m006), for people who browse the file: ``labels_in_context`` and
``preferences_in_context`` (each label / preference with clip, question, trace, step index and
texts).

``clips``, ``traces``, ``steps`` and ``alternatives`` also have ``extra``: a JSON object with the
Trace JSON fields that have no column (fields added to the Trace within its schema version), so
that ``Store.get_trace`` gives back everything that was imported.
"""

from __future__ import annotations

import json

from sqlite_utils import Database, Migrations

migrations = Migrations("annotation_db")

VERDICTS = ("accept", "reject", "unsure")
ERROR_TYPES = ("visual_misperception", "audio_misperception", "hallucination", "reasoning_logic", "other")


def _in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


def _run(db: Database, statements: list[str]) -> None:
    # One statement per execute: executescript() would COMMIT the migration's transaction.
    for sql in statements:
        db.execute(sql)


@migrations()
def m001_initial(db: Database) -> None:
    """Clips, traces, steps, annotators, step labels and their history."""
    _run(
        db,
        [
            """CREATE TABLE clips (
                sha256 TEXT PRIMARY KEY,
                name TEXT NOT NULL DEFAULT '',
                path TEXT NOT NULL DEFAULT '',
                duration_s REAL, fps REAL, width INTEGER, height INTEGER,
                has_audio INTEGER,
                frame_times_s TEXT,            -- JSON list of seconds
                created_at TEXT NOT NULL)""",
            """CREATE TABLE traces (
                id TEXT PRIMARY KEY,
                seq INTEGER NOT NULL UNIQUE,   -- import order, for stable listings and exports
                clip_sha256 TEXT NOT NULL REFERENCES clips(sha256),
                question TEXT NOT NULL,
                options TEXT,                  -- JSON list or NULL
                reference_answer TEXT,
                prompt_kind TEXT NOT NULL,
                prompt TEXT NOT NULL,
                model TEXT NOT NULL,           -- JSON object
                decoding TEXT NOT NULL,        -- JSON object
                scoring TEXT,                  -- JSON object or NULL
                answer_text TEXT NOT NULL DEFAULT '',
                answer_choice TEXT,
                timings TEXT NOT NULL,         -- JSON object
                source TEXT NOT NULL,
                created_at TEXT NOT NULL,
                schema_version INTEGER NOT NULL,
                identity_sha256 TEXT NOT NULL,
                imported_at TEXT NOT NULL)""",
            "CREATE INDEX traces_clip ON traces(clip_sha256)",
            """CREATE TABLE steps (
                id INTEGER PRIMARY KEY,
                trace_id TEXT NOT NULL REFERENCES traces(id),
                idx INTEGER NOT NULL,
                text TEXT NOT NULL,
                token_start INTEGER, token_end INTEGER,
                score REAL,
                token_kl TEXT,                 -- JSON list of per-token KL (nats) or NULL
                top_t INTEGER NOT NULL DEFAULT 0,
                scores TEXT NOT NULL DEFAULT '{}',
                token_kls TEXT NOT NULL DEFAULT '{}',
                expected_correctness REAL,
                UNIQUE (trace_id, idx))""",
            """CREATE TABLE annotators (
                name TEXT PRIMARY KEY,
                created_at TEXT NOT NULL)""",
            f"""CREATE TABLE labels (
                id INTEGER PRIMARY KEY,
                step_id INTEGER NOT NULL REFERENCES steps(id),
                annotator TEXT NOT NULL REFERENCES annotators(name),
                verdict TEXT NOT NULL CHECK (verdict IN {_in(VERDICTS)}),
                error_type TEXT CHECK (error_type IS NULL OR error_type IN {_in(ERROR_TYPES)}),
                comment TEXT NOT NULL DEFAULT '',
                time_spent_s REAL NOT NULL DEFAULT 0,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                UNIQUE (step_id, annotator))""",
            """CREATE TABLE label_events (
                id INTEGER PRIMARY KEY,
                step_id INTEGER NOT NULL REFERENCES steps(id),
                annotator TEXT NOT NULL REFERENCES annotators(name),
                action TEXT NOT NULL,
                verdict TEXT, error_type TEXT, comment TEXT,
                time_spent_s REAL NOT NULL DEFAULT 0,
                prev_event_id INTEGER REFERENCES label_events(id),
                at TEXT NOT NULL)""",
        ],
    )


@migrations()
def m002_alternatives_and_preferences(db: Database) -> None:
    """Alternatives, labels on alternatives (labels rebuilt with item_kind), preferences."""
    _run(
        db,
        [
            """CREATE TABLE alternatives (
                id INTEGER PRIMARY KEY,
                step_id INTEGER NOT NULL REFERENCES steps(id),
                text TEXT NOT NULL,
                source TEXT NOT NULL CHECK (source IN ('model', 'human')),
                settings TEXT NOT NULL DEFAULT '{}',
                expected_correctness REAL,
                created_by TEXT REFERENCES annotators(name),
                created_at TEXT NOT NULL)""",
            "CREATE INDEX alternatives_step ON alternatives(step_id)",
            # SQLite cannot add a CHECK or change a UNIQUE in place: rebuild ``labels``. Nothing
            # references it, so dropping it is safe with foreign keys on.
            f"""CREATE TABLE labels_new (
                id INTEGER PRIMARY KEY,
                item_kind TEXT NOT NULL CHECK (item_kind IN ('step', 'alternative')),
                step_id INTEGER NOT NULL REFERENCES steps(id),
                alternative_id INTEGER REFERENCES alternatives(id),
                annotator TEXT NOT NULL REFERENCES annotators(name),
                verdict TEXT NOT NULL CHECK (verdict IN {_in(VERDICTS)}),
                error_type TEXT CHECK (error_type IS NULL OR error_type IN {_in(ERROR_TYPES)}),
                comment TEXT NOT NULL DEFAULT '',
                time_spent_s REAL NOT NULL DEFAULT 0,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                event_id INTEGER REFERENCES label_events(id),
                CHECK ((item_kind = 'step') = (alternative_id IS NULL)))""",
            """INSERT INTO labels_new (id, item_kind, step_id, alternative_id, annotator, verdict,
                    error_type, comment, time_spent_s, created_at, updated_at, event_id)
               SELECT l.id, 'step', l.step_id, NULL, l.annotator, l.verdict, l.error_type, l.comment,
                    l.time_spent_s, l.created_at, l.updated_at,
                    (SELECT max(e.id) FROM label_events e
                     WHERE e.step_id = l.step_id AND e.annotator = l.annotator)
               FROM labels l""",
            "DROP TABLE labels",
            "ALTER TABLE labels_new RENAME TO labels",
            "CREATE UNIQUE INDEX labels_step_item ON labels(step_id, annotator) WHERE alternative_id IS NULL",
            "CREATE UNIQUE INDEX labels_alternative_item ON labels(alternative_id, annotator) "
            "WHERE alternative_id IS NOT NULL",
            "ALTER TABLE label_events ADD COLUMN item_kind TEXT NOT NULL DEFAULT 'step'",
            "ALTER TABLE label_events ADD COLUMN alternative_id INTEGER REFERENCES alternatives(id)",
            """CREATE TABLE preferences (
                id INTEGER PRIMARY KEY,
                step_id INTEGER NOT NULL REFERENCES steps(id),
                alternative_id INTEGER NOT NULL REFERENCES alternatives(id),
                annotator TEXT NOT NULL REFERENCES annotators(name),
                chosen TEXT NOT NULL CHECK (chosen IN ('alternative', 'original')),
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                UNIQUE (alternative_id, annotator))""",
            """CREATE TABLE preference_events (
                id INTEGER PRIMARY KEY,
                step_id INTEGER NOT NULL REFERENCES steps(id),
                alternative_id INTEGER NOT NULL REFERENCES alternatives(id),
                annotator TEXT NOT NULL REFERENCES annotators(name),
                chosen TEXT,                   -- NULL: the preference was withdrawn
                at TEXT NOT NULL)""",
        ],
    )


@migrations()
def m003_guards_and_indexes(db: Database) -> None:
    """History is append-only and a label never changes hands, enforced by the database."""
    _run(
        db,
        [
            "CREATE INDEX label_events_item ON label_events(step_id, alternative_id, annotator)",
            "CREATE INDEX labels_annotator ON labels(annotator)",
            "CREATE INDEX preferences_step ON preferences(step_id)",
            """CREATE TRIGGER label_events_no_update BEFORE UPDATE ON label_events
               BEGIN SELECT RAISE(ABORT, 'label history is append-only'); END""",
            """CREATE TRIGGER label_events_no_delete BEFORE DELETE ON label_events
               BEGIN SELECT RAISE(ABORT, 'label history is append-only'); END""",
            """CREATE TRIGGER preference_events_no_update BEFORE UPDATE ON preference_events
               BEGIN SELECT RAISE(ABORT, 'preference history is append-only'); END""",
            """CREATE TRIGGER preference_events_no_delete BEFORE DELETE ON preference_events
               BEGIN SELECT RAISE(ABORT, 'preference history is append-only'); END""",
            """CREATE TRIGGER labels_keep_owner BEFORE UPDATE OF annotator, step_id, alternative_id ON labels
               WHEN NEW.annotator IS NOT OLD.annotator OR NEW.step_id IS NOT OLD.step_id
                    OR NEW.alternative_id IS NOT OLD.alternative_id
               BEGIN SELECT RAISE(ABORT, 'a label keeps its annotator and item'); END""",
            """CREATE TRIGGER preferences_keep_owner BEFORE UPDATE OF annotator, alternative_id ON preferences
               WHEN NEW.annotator IS NOT OLD.annotator OR NEW.alternative_id IS NOT OLD.alternative_id
               BEGIN SELECT RAISE(ABORT, 'a preference keeps its annotator and item'); END""",
        ],
    )


@migrations()
def m004_extra_fields(db: Database) -> None:
    """Keep Trace JSON fields this version does not know (the schema grows within a version,
    e.g. ``kl_tokens`` on steps), as a JSON object per row, so a round trip loses nothing."""
    for table in ("clips", "traces", "steps", "alternatives"):
        db[table].add_column("extra", str, not_null_default="{}")


@migrations()
def m005_one_synthdec_question(db: Database) -> None:
    """Every ``synthdec`` trace carries the fixed SynthDec question (``tracejson.SYNTHDEC_QUESTION``):
    before, the app and ``run`` stored "", ``import-published`` the manifest's text, so full-path
    pairs between them were missed. The identity hash is recomputed with the new question, so
    importing the same file again still finds the trace stored."""
    from annotation_db.tracejson import identity_hash
    from studio_trace import SYNTHDEC_QUESTION

    rows = db.execute(
        "SELECT id, clip_sha256, options, prompt FROM traces WHERE prompt_kind = 'synthdec' AND question != ?",
        [SYNTHDEC_QUESTION],
    ).fetchall()
    for trace_id, clip_sha256, options, prompt in rows:
        steps = db.execute("SELECT text FROM steps WHERE trace_id = ? ORDER BY idx", [trace_id]).fetchall()
        # Imported alternatives have no creator; add_alternative always records one.
        alternatives = db.execute(
            """SELECT s.idx, a.text FROM alternatives a JOIN steps s ON s.id = a.step_id
               WHERE s.trace_id = ? AND a.created_by IS NULL ORDER BY a.id""",
            [trace_id],
        ).fetchall()
        identity = identity_hash(
            {
                "clip": {"sha256": clip_sha256},
                "question": SYNTHDEC_QUESTION,
                "options": None if options is None else json.loads(options),
                "prompt": prompt,
                "steps": [{"text": text} for (text,) in steps],
                "alternatives": [{"step_index": idx, "text": text} for idx, text in alternatives],
            }
        )
        db.execute(
            "UPDATE traces SET question = ?, identity_sha256 = ? WHERE id = ?",
            [SYNTHDEC_QUESTION, identity, trace_id],
        )


@migrations()
def m006_readable_views(db: Database) -> None:
    """Views for people who browse the file (datasette, sqlite3): each current label and each
    preference with its clip, question, trace, step index (0-based, as stored) and texts."""
    _run(
        db,
        [
            """CREATE VIEW labels_in_context AS
               SELECT l.id AS label_id, c.name AS clip, c.sha256 AS clip_sha256, t.question,
                      t.id AS trace_id, s.idx AS step_index, s.text AS step_text,
                      l.item_kind, l.alternative_id, a.text AS alternative_text,
                      l.annotator, l.verdict, l.error_type, l.comment, l.time_spent_s,
                      l.created_at, l.updated_at
               FROM labels l
               JOIN steps s ON s.id = l.step_id
               JOIN traces t ON t.id = s.trace_id
               JOIN clips c ON c.sha256 = t.clip_sha256
               LEFT JOIN alternatives a ON a.id = l.alternative_id""",
            """CREATE VIEW preferences_in_context AS
               SELECT p.id AS preference_id, c.name AS clip, c.sha256 AS clip_sha256, t.question,
                      t.id AS trace_id, s.idx AS step_index, s.text AS step_text,
                      p.alternative_id, a.text AS alternative_text, p.annotator, p.chosen,
                      p.created_at, p.updated_at
               FROM preferences p
               JOIN steps s ON s.id = p.step_id
               JOIN traces t ON t.id = s.trace_id
               JOIN clips c ON c.sha256 = t.clip_sha256
               JOIN alternatives a ON a.id = p.alternative_id""",
        ],
    )


# ---------------------------------------------------------------------- review (issue 16)

ROLES = ("annotator", "reviewer", "admin")
REVIEW_ACTIONS = ("decide", "send_back", "clear", "undo")
REVIEW_STATUSES = ("decided", "sent_back")


@migrations()
def m007_review_roles_and_adjudication(db: Database) -> None:
    """Roles of annotators (with their history), reviewers' decisions per item (current state
    plus an append-only history like ``label_events``) and a kind per clip for error analysis."""
    _run(
        db,
        [
            f"ALTER TABLE annotators ADD COLUMN role TEXT NOT NULL DEFAULT 'annotator' "
            f"CHECK (role IN {_in(ROLES)})",
            """CREATE TABLE role_events (
                id INTEGER PRIMARY KEY,
                annotator TEXT NOT NULL REFERENCES annotators(name),
                role TEXT NOT NULL,
                set_by TEXT,                   -- NULL: the auth file or the command line
                at TEXT NOT NULL)""",
            f"""CREATE TABLE review_events (
                id INTEGER PRIMARY KEY,
                item_kind TEXT NOT NULL CHECK (item_kind IN ('step', 'alternative')),
                step_id INTEGER NOT NULL REFERENCES steps(id),
                alternative_id INTEGER REFERENCES alternatives(id),
                reviewer TEXT NOT NULL REFERENCES annotators(name),
                action TEXT NOT NULL CHECK (action IN {_in(REVIEW_ACTIONS)}),
                -- the item's review state after this event (status NULL: no review)
                status TEXT CHECK (status IS NULL OR status IN {_in(REVIEW_STATUSES)}),
                verdict TEXT CHECK (verdict IS NULL OR verdict IN ('accept', 'reject')),
                error_type TEXT CHECK (error_type IS NULL OR error_type IN {_in(ERROR_TYPES)}),
                note TEXT NOT NULL DEFAULT '',
                decided_by TEXT REFERENCES annotators(name),  -- who made the state in force
                origin_event_id INTEGER REFERENCES review_events(id),  -- the event that made it
                prev_event_id INTEGER REFERENCES review_events(id),  -- the state undo returns to
                at TEXT NOT NULL)""",
            "CREATE INDEX review_events_item ON review_events(step_id, alternative_id)",
            """CREATE TRIGGER review_events_no_update BEFORE UPDATE ON review_events
               BEGIN SELECT RAISE(ABORT, 'review history is append-only'); END""",
            """CREATE TRIGGER review_events_no_delete BEFORE DELETE ON review_events
               BEGIN SELECT RAISE(ABORT, 'review history is append-only'); END""",
            """CREATE TRIGGER role_events_no_update BEFORE UPDATE ON role_events
               BEGIN SELECT RAISE(ABORT, 'role history is append-only'); END""",
            """CREATE TRIGGER role_events_no_delete BEFORE DELETE ON role_events
               BEGIN SELECT RAISE(ABORT, 'role history is append-only'); END""",
            f"""CREATE TABLE reviews (
                id INTEGER PRIMARY KEY,
                item_kind TEXT NOT NULL CHECK (item_kind IN ('step', 'alternative')),
                step_id INTEGER NOT NULL REFERENCES steps(id),
                alternative_id INTEGER REFERENCES alternatives(id),
                status TEXT NOT NULL CHECK (status IN {_in(REVIEW_STATUSES)}),
                verdict TEXT CHECK (verdict IS NULL OR verdict IN ('accept', 'reject')),
                error_type TEXT CHECK (error_type IS NULL OR error_type IN {_in(ERROR_TYPES)}),
                note TEXT NOT NULL DEFAULT '',
                reviewer TEXT NOT NULL REFERENCES annotators(name),
                event_id INTEGER NOT NULL REFERENCES review_events(id),
                updated_at TEXT NOT NULL,
                CHECK ((item_kind = 'step') = (alternative_id IS NULL)),
                CHECK ((status = 'decided') = (verdict IS NOT NULL)))""",
            "CREATE UNIQUE INDEX reviews_step_item ON reviews(step_id) WHERE alternative_id IS NULL",
            "CREATE UNIQUE INDEX reviews_alternative_item ON reviews(alternative_id) "
            "WHERE alternative_id IS NOT NULL",
            """CREATE TABLE clip_kinds (
                clip_sha256 TEXT PRIMARY KEY REFERENCES clips(sha256),
                kind TEXT NOT NULL,
                set_at TEXT NOT NULL)""",
        ],
    )
