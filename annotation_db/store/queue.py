"""What to label next (the queue), how far everyone got (progress), and the reports made from
the labels: training exports (``annotation_db.export``) and statistics (``annotation_db.stats``)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from annotation_db.errors import ExportEmptyError, ExportFormatError
from annotation_db.store.connection import parse_since
from annotation_db.store.items import check_annotator

QUEUE_ORDERS = ("max_score", "oldest", "newest", "fewest_annotators")


class QueueVerbs:
    """Queue, progress, export and stats (mixed into ``Store``)."""

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
        annotator = check_annotator(annotator)
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
            SELECT t.id AS trace_id, c.name AS clip_name, c.path AS video_path, c.sha256 AS clip_sha256,
                   t.question, t.prompt_kind, t.source, coalesce(st.n_steps, 0) AS n_steps,
                   st.max_score, coalesce(mine.n, 0) AS labeled_by_me,
                   coalesce(mine.n, 0) >= coalesce(st.n_steps, 0) AS done_by_me, coalesce(who.n, 0) AS n_annotators
            FROM traces t JOIN clips c ON c.sha256 = t.clip_sha256
            LEFT JOIN st ON st.trace_id = t.id LEFT JOIN mine ON mine.trace_id = t.id
            LEFT JOIN who ON who.trace_id = t.id
            {where} ORDER BY {order_sql} LIMIT ?"""
        with self._read() as db:
            rows = list(db.query(sql, [annotator, -1 if limit is None else limit]))
        return [{**r, "done_by_me": bool(r["done_by_me"])} for r in rows]

    def progress(self) -> dict[str, Any]:
        """Totals (traces, steps, alternatives, labels, steps labeled by anyone) and, per
        annotator, labels, steps labeled, traces done (every step labeled) and time spent (s)."""
        with self._read() as db:
            totals = list(
                db.query(
                    """SELECT (SELECT count(*) FROM traces) AS traces, (SELECT count(*) FROM steps) AS steps,
                              (SELECT count(*) FROM alternatives) AS alternatives,
                              (SELECT count(*) FROM labels) AS labels,
                              (SELECT count(DISTINCT step_id) FROM labels WHERE item_kind = 'step')
                              AS steps_labeled"""
                )
            )[0]
            per = list(
                db.query(
                    """WITH n AS (SELECT trace_id, count(*) AS n FROM steps GROUP BY trace_id),
                            m AS (SELECT l.annotator, s.trace_id, count(*) AS k FROM labels l
                                  JOIN steps s ON s.id = l.step_id WHERE l.item_kind = 'step'
                                  GROUP BY l.annotator, s.trace_id)
                       SELECT a.name,
                              (SELECT count(*) FROM labels WHERE annotator = a.name) AS labels,
                              (SELECT count(*) FROM labels WHERE annotator = a.name AND item_kind = 'step')
                              AS steps_labeled,
                              (SELECT count(*) FROM m JOIN n ON n.trace_id = m.trace_id
                               WHERE m.annotator = a.name AND m.k >= n.n) AS traces_done,
                              (SELECT coalesce(sum(time_spent_s), 0) FROM label_events
                               WHERE annotator = a.name) AS time_s
                       FROM annotators a ORDER BY a.name"""
                )
            )
        return {**totals, "annotators": {r.pop("name"): r for r in per}}

    def export(
        self,
        format: str,
        out: str | Path,
        *,
        annotators: list[str] | None = None,
        min_agreement: float = 0.0,
        min_annotators: int = 0,
        adjudicated_only: bool = False,
        resolution: str = "majority",
        since: str | datetime | None = None,
        mu: float | None = None,
        video_root: str | Path | None = None,
    ) -> dict[str, Any]:
        """Write the labels as training data; see ``annotation_db.export`` for the formats and
        rules (the resolved verdicts, ``resolution`` majority or dawid_skene, and the filters).
        ``out`` ends in .jsonl or .parquet. ``video_path`` is written relative to
        ``video_root`` (default: the database's folder) for the clips under it. Returns
        {"format", "path", "records", "video_root"}; ExportEmptyError (no file) for 0 records."""
        from annotation_db import export

        if not 0.0 <= min_agreement <= 1.0:
            raise ExportFormatError(f"min_agreement is a fraction between 0 and 1, not {min_agreement!r}")
        if mu is not None and not mu > 0:
            raise ExportFormatError(f"mu must be a positive number, not {mu!r}")
        filters = export.ExportOptions(
            annotators=tuple(check_annotator(a) for a in annotators) if annotators else None,
            min_agreement=min_agreement,
            min_annotators=min_annotators,
            adjudicated_only=bool(adjudicated_only),
            resolution=str(resolution).replace("-", "_"),  # dawid-skene as the command line spells it
            since=parse_since(since),
            mu=export.DEFAULT_MU if mu is None else mu,
            video_root=str(Path(video_root or self.path.parent).resolve()),
        )
        export.check_format(format)
        export.check_out(Path(out))
        records = self.export_records(format, filters)
        if not records:
            raise ExportEmptyError(
                f"no labelled steps match the {format} export with these filters{export.EMPTY_HINTS[format]}; "
                "label more steps or loosen the annotator, min-agreement, min-annotators, adjudicated-only or "
                "since filters (no file was written)"
            )
        path = export.write(records, format, Path(out))
        return {
            "format": format,
            "path": str(path),
            "records": len(records),
            "video_root": filters.video_root,
        }

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
