"""Export files: the column types of every format, and writing records as JSONL or Parquet.

One table (``COLUMNS``) gives each format's columns and types; the Parquet schema and the
``datasets.Features`` that make a JSONL file load with the same types are both built from it,
so a column that is null in every record (e.g. ``chosen_score`` of an export without original
steps) is still float64 in JSONL as in Parquet. pyarrow and datasets are imported inside the
functions: the UI imports the store and should not pay for them.

Files are written to a temp file in the target folder and renamed into place (a crash never
leaves half a file under the final name), with the permissions of a file the user creates
(``0666 & ~umask``): ``mkstemp`` alone would make them 0600, unreadable by a training job
running as another user.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from annotation_db.errors import ExportFormatError, ExportWriteError

FORMATS = ("pdpo", "trl-dpo", "trl-stepwise", "step-dpo")
SUFFIXES = (".jsonl", ".parquet")

_VIDEO = [("video_path", "string"), ("video_sha256", "string")]
# How a record's label was decided (annotation_db.export, "How a record's label was decided").
_DECIDED = [
    ("label_source", "string"),
    ("adjudicated", "bool"),
    ("n_annotators", "int64"),
    ("agreement", "float64"),
]
# Column name -> type: string, int64, float64, bool, or a list of string / bool ("list<...>").
COLUMNS: dict[str, list[tuple[str, str]]] = {
    "pdpo": [
        ("pair_type", "string"),
        *_VIDEO,
        ("question", "string"),
        ("options", "list<string>"),
        ("prompt", "string"),
        ("step_index", "int64"),
        ("prefix_steps", "list<string>"),
        ("chosen_steps", "list<string>"),
        ("rejected_steps", "list<string>"),
        ("chosen_trace_id", "string"),
        ("rejected_trace_id", "string"),
        ("chosen_source", "string"),
        ("rejected_source", "string"),
        ("chosen_alternative_id", "int64"),
        ("rejected_alternative_id", "int64"),
        ("chosen_score", "float64"),
        ("rejected_score", "float64"),
        ("chosen_expected_correctness", "float64"),
        ("rejected_expected_correctness", "float64"),
        ("soft_label", "float64"),
        ("rollout_conflict", "bool"),
        ("provenance", "list<string>"),
        ("annotators", "list<string>"),
        ("n_annotators", "int64"),
        ("agreement", "float64"),
        ("confidence", "float64"),
        ("label_source", "string"),
        ("adjudicated", "bool"),
        ("labeled_at", "string"),
    ],
    "trl-dpo": [("prompt", "string"), ("chosen", "string"), ("rejected", "string"), *_VIDEO, *_DECIDED],
    "trl-stepwise": [
        ("prompt", "string"),
        ("completions", "list<string>"),
        ("labels", "list<bool>"),
        ("step_separator", "string"),
        *_VIDEO,
        *_DECIDED,
    ],
    "step-dpo": [
        ("dataset", "string"),
        ("prompt", "string"),
        ("initial_reason_steps", "string"),
        ("chosen", "string"),
        ("rejected", "string"),
        ("full_chosen", "string"),
        ("full_rejected", "string"),
        ("answer", "string"),
        *_VIDEO,
        *_DECIDED,
    ],
}


def parquet_schema(format: str) -> Any:
    """The explicit Arrow schema of ``format`` (Parquet files are written with it)."""
    import pyarrow as pa

    scalar = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_()}

    def arrow(kind: str) -> Any:
        return pa.list_(scalar[kind[5:-1]]) if kind.startswith("list<") else scalar[kind]

    check_format(format)
    return pa.schema([(name, arrow(kind)) for name, kind in COLUMNS[format]])


def datasets_features(format: str) -> Any:
    """``datasets.Features`` of ``format``: pass it to ``load_dataset("json", ...,
    features=...)`` and a JSONL export loads with exactly the Parquet file's types."""
    import datasets

    return datasets.Features.from_arrow_schema(parquet_schema(format))


def check_format(format: str) -> None:
    if format not in FORMATS:
        raise ExportFormatError(f"export format must be one of {', '.join(FORMATS)}, not {format!r}")


def check_out(out: Path) -> str:
    suffix = out.suffix.lower()
    if suffix not in SUFFIXES:
        raise ExportFormatError(f"the output file must end in .jsonl or .parquet, not {out.name!r}")
    return suffix


def write(records: list[dict[str, Any]], format: str, out: Path) -> Path:
    """Write ``records`` to ``out`` (.jsonl or .parquet) via a temp file, so a crash never
    leaves half a file under the final name. ExportWriteError when the folder's disk is full
    or the folder cannot be written (nothing is left behind then)."""
    check_format(format)
    suffix = check_out(out)
    try:
        _write_file(records, format, suffix, out)
    except OSError as exc:  # pyarrow's write errors are OSErrors too, errno included
        raise export_write_error(out, exc) from exc
    return out


def export_write_error(out: Path, exc: OSError) -> ExportWriteError:
    """The one-line error for an export file that could not be written."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(exc):
        return ExportWriteError(
            f"the disk holding {out.parent} is full, so no export was written; free some space there "
            "or export to another folder"
        )
    why = exc.strerror or str(exc)
    if exc.errno in (errno.EEXIST, errno.ENOTDIR):  # mkdir or open under a path that is a file
        why = "a file stands where its folder should be"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return ExportWriteError(f"cannot write to {out.parent} ({why}); export to a folder you can write to")
    return ExportWriteError(f"cannot write {out} ({why}); export to another folder")


def _umask() -> int:
    # os.umask can only be read by setting it; set it back at once. Linux >= 4.7 shows it in
    # /proc without that (no window in which another thread creates a file with mask 0).
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_file(records: list[dict[str, Any]], format: str, suffix: str, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        if suffix == ".jsonl":
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            os.close(fd)
            pq.write_table(pa.Table.from_pylist(records, schema=parquet_schema(format)), tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
