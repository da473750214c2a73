"""``python -m annotation_db --db PATH <command>``: the store from the command line.

Commands: migrate, import, import-published, export, stats, queue, label, undo, role, tag-kinds. User errors
(a bad file, an unknown trace, a wrong verdict) print one line "error: ..." on stderr and exit
with code 2. ``--db`` defaults to the ANNOTATION_DB environment variable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from annotation_db.errors import StoreError
from annotation_db.export import DEFAULT_MU, FORMATS
from annotation_db.migrations import ERROR_TYPES, ROLES, VERDICTS
from annotation_db.resolution import METHODS, ResolutionRule
from annotation_db.stats import format_resolved
from annotation_db.store import QUEUE_ORDERS, Store


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m annotation_db", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--db",
        default=os.environ.get("ANNOTATION_DB"),
        help="the SQLite file (created and migrated if needed; default: $ANNOTATION_DB)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("migrate", help="create or migrate the database and list its migrations")

    p = sub.add_parser("import", help="import Trace JSON (idempotent, all or nothing)")
    p.add_argument(
        "file",
        help="a .jsonl file (one Trace JSON per line), one Trace JSON file (as `python -m inference run "
        "--out` writes it), or a folder of them (a batch --out folder: its traces.jsonl)",
    )

    p = sub.add_parser("import-published", help="import published reasoning from a clips manifest.jsonl")
    p.add_argument("manifest", help="e.g. ../shared/clips/manifest.jsonl (clip files next to it)")

    p = sub.add_parser("export", help="write labels as training data")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--out", required=True, help="output file ending in .jsonl or .parquet")
    p.add_argument("--annotator", action="append", help="count only this annotator's labels (repeatable)")
    p.add_argument(
        "--min-agreement",
        type=float,
        default=0.0,
        help="drop aggregated verdicts with a lower share of votes (0..1; never a reviewer's decision)",
    )
    p.add_argument(
        "--min-annotators",
        type=_count,
        default=0,
        help="drop aggregated verdicts with fewer accept/reject voters (never a reviewer's decision)",
    )
    p.add_argument("--adjudicated-only", action="store_true", help="only verdicts a reviewer decided")
    p.add_argument(
        "--resolution",
        type=_method,
        choices=METHODS,
        default="majority",
        help="how annotators' labels combine where no reviewer decided (dawid-skene also spelled dawid_skene)",
    )
    p.add_argument("--since", help="only records labeled at or after this ISO date/time (UTC)")
    p.add_argument("--mu", type=float, default=DEFAULT_MU, help="soft-label temperature (pdpo)")
    p.add_argument(
        "--video-root",
        help="write video_path relative to this folder for the clips under it (default: the database's "
        "folder); pass the same folder to the trainer's --video-root",
    )

    p = sub.add_parser("stats", help="counts, effort, agreement, calibration, quality and error analysis")
    p.add_argument("--json", action="store_true", help="print the full statistics as JSON")
    p.add_argument("--method", choices=METHODS, default="majority", help="how annotators' labels combine")
    p.add_argument("--min-labels", type=_min_labels, default=1, help="accept/reject votes an item needs")
    p.add_argument("--min-agreement", type=_fraction, default=0.0, help="confidence an item needs (0..1)")

    p = sub.add_parser("role", help="list roles, or set one (the command line acts as an admin)")
    p.add_argument("name", nargs="?", help="an annotator name; without it, list every role")
    p.add_argument("role", nargs="?", choices=ROLES, help="the role to give; without it, show it")

    p = sub.add_parser("tag-kinds", help="tag stored clips with the kind their manifest entry names")
    p.add_argument("manifest", help="e.g. ../shared/clips/manifest.jsonl (clip files next to it)")

    p = sub.add_parser("queue", help="traces to label for an annotator, highest step score first")
    p.add_argument("--annotator", required=True)
    p.add_argument("--order", choices=QUEUE_ORDERS, default="max_score")
    p.add_argument("--all", action="store_true", help="include traces the annotator has finished")
    p.add_argument("--limit", type=int, default=20)

    p = sub.add_parser("label", help="set an annotator's label of a step or alternative")
    _item_arguments(p)
    p.add_argument("--verdict", required=True, choices=VERDICTS)
    p.add_argument("--error-type", choices=ERROR_TYPES)
    p.add_argument("--comment", default="")
    p.add_argument("--time", type=float, default=0.0, help="seconds spent")

    p = sub.add_parser("undo", help="restore an annotator's previous label of an item")
    _item_arguments(p)
    return parser


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction between 0 and 1")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is not a count >= 0")
    return value


def _method(text: str) -> str:
    return text.replace("-", "_")


def _min_labels(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a count >= 1")
    return value


def _item_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--annotator", required=True)
    parser.add_argument("--trace", required=True, help="trace id")
    parser.add_argument("--step", required=True, type=int, help="step index (0-based)")
    parser.add_argument("--alternative", type=int, help="alternative id at that step")


def _print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2))


def run(args: argparse.Namespace) -> int:
    if not args.db:
        raise StoreError("no database given; pass --db PATH or set ANNOTATION_DB")
    with Store.open(args.db) as store:
        if args.command == "migrate":
            from annotation_db.migrations import migrations

            for applied in migrations.applied(store.db):
                print(f"{applied.name}  {applied.applied_at}")
        elif args.command == "import":
            result = store.import_traces(args.file)
            print(f"imported {result['added']} traces, {result['skipped']} already stored")
        elif args.command == "import-published":
            result = store.import_published(args.manifest)
            print(
                f"imported {result['added']} traces, {result['skipped']} already stored, "
                f"{result['without_reasoning']} entries without published reasoning"
            )
        elif args.command == "export":
            result = store.export(
                args.format,
                args.out,
                annotators=args.annotator,
                min_agreement=args.min_agreement,
                min_annotators=args.min_annotators,
                adjudicated_only=args.adjudicated_only,
                resolution=args.resolution,
                since=args.since,
                mu=args.mu,
                video_root=args.video_root,
            )
            print(
                f"wrote {result['records']} {result['format']} records to {result['path']} "
                f"(video_path relative to {result['video_root']})"
            )
        elif args.command == "stats":
            stats = store.analysis(ResolutionRule(args.method, args.min_labels, args.min_agreement))
            _print_json(stats) if args.json else print(format_stats(stats))
        elif args.command == "role":
            if args.name and args.role:
                changed = store.set_role(args.name, args.role)
                print(f"{args.name} is {'now' if changed else 'already'} {args.role}")
            elif args.name:
                print(f"{args.name}  {store.role(args.name)}")
            else:
                for name, role in store.roles().items():
                    print(f"{name}  {role}")
        elif args.command == "tag-kinds":
            result = store.tag_clip_kinds(args.manifest)
            print(f"tagged {result['tagged']} clips; {result['not_stored']} manifest clips are not stored")
        elif args.command == "queue":
            for item in store.queue(
                args.annotator, unlabeled_only=not args.all, order=args.order, limit=args.limit
            ):
                score = "-" if item["max_score"] is None else f"{item['max_score']:.4f}"
                print(
                    f"{item['trace_id']}  max_score {score}  {item['labeled_by_me']}/{item['n_steps']} labeled  "
                    f"{item['clip_name']}: {item['question'][:60]}"
                )
        elif args.command == "label":
            label = store.set_label(
                args.annotator,
                args.trace,
                args.step,
                args.verdict,
                alternative_id=args.alternative,
                error_type=args.error_type,
                comment=args.comment,
                time_spent_s=args.time,
            )
            _print_json(label)
        elif args.command == "undo":
            label = store.undo_label(args.annotator, args.trace, args.step, alternative_id=args.alternative)
            _print_json(label) if label else print("the item is now unlabeled")
    return 0


def format_stats(stats: dict[str, Any]) -> str:
    """The statistics as a short text report."""

    def num(value: float | None, digits: int = 3) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}"

    lines = [f"labels: {stats['labels']}"]
    lines.append("verdicts: " + ", ".join(f"{k} {v}" for k, v in stats["verdicts"].items()))
    lines.append("error types: " + ", ".join(f"{k} {v}" for k, v in stats["error_types"].items()))
    lines.append("annotators:")
    for name, a in stats["annotators"].items():
        lines.append(
            f"  {name}: {a['labels']} labels (accept {a['accept']}, reject {a['reject']}, "
            f"unsure {a['unsure']}), {a['time_s']:.1f} s"
        )
    agreement = stats["agreement"]
    lines.append(
        f"agreement: Krippendorff's alpha {num(agreement['krippendorff_alpha'])} "
        f"over {agreement['items_multiply_labeled']} items labeled by 2+"
    )
    for pair in agreement["pairs"]:
        lines.append(
            f"  Cohen's kappa {' / '.join(pair['annotators'])}: {num(pair['kappa'])} over {pair['items']} items"
        )
    calibration = stats["calibration"]
    lines.append(
        f"calibration: {calibration['steps']} scored steps with a verdict, AUROC {num(calibration['auroc'])}"
    )
    for d in calibration["deciles"]:
        lines.append(
            f"  decile {d['decile']:2d}: score {d['min_score']:.4f}..{d['max_score']:.4f}  "
            f"reject rate {d['reject_rate']:.2f} ({d['rejects']}/{d['steps']})"
        )
    return "\n".join(lines + format_resolved(stats))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (``... queue | head``): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
