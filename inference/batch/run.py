"""``python -m inference batch``: Traces for every question of a manifest, on one or many GPUs.

    python -m inference batch --manifest clips.jsonl --out runs/b1 [--samples-per-question 10]
    accelerate launch --config_file examples/accelerate/one_node_multi_gpu.yaml \\
        -m inference batch --manifest clips.jsonl --out runs/b1

Data parallel: every process (``accelerate launch`` starts one per GPU, on one node or many)
loads its own model and works through its share of the items. An item is one manifest entry
and one sample index; its id is a hash of the entry's canonical JSON, the sample index and the
settings that shape a trace (model, decoding, scoring), so the Trace id (``batch-<item id>``) is
the same whenever the same item is made again and re-importing into the store is a no-op.

The output folder is the ledger (``inference.batch.ledger``: one run at a time per folder;
every node must see it, e.g. a shared file system). Exactly once: before any work, process 0
takes the folder's lock, cuts any unfinished last line off every shard (a process killed inside
a write), reads which items are finished and hands out the rest (process r of W takes
pending[r::W]); an item is finished once its whole line is in a shard. A killed process's item
in progress is therefore redone by the next run, and a finished one never is.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from inference.batch.items import (
    BatchError,
    BatchSettings,
    ManifestEntry,
    WorkItem,
    plan_items,
    read_manifest,
    shard,
)
from inference.batch.ledger import Ledger, LedgerWatcher, append_line, plan_run, summarize, write_atomic
from inference.errors import UserError
from inference.options import ModelOptions

POLL_S = 0.5  # how often process 0 looks at the ledger while the others finish
# The one collective (the plan handed out by process 0) waits while process 0 scans the ledger;
# a large folder on a network file system can take minutes, torch's default is 30 min.
PLAN_TIMEOUT_S = 3 * 3600


# --------------------------------------------------------------------------- one process's work


@dataclass
class RankReport:
    run_id: str
    rank: int
    assigned: int = 0
    done: int = 0
    failed: int = 0
    tokens: int = 0  # first-pass (reasoning) tokens generated
    load_s: float = 0.0  # loading the model (0 when no clip of this process could be read)
    work_s: float = 0.0  # from the first item to the last, model loading included


class Worker:
    """Makes the Trace of one item with the analysis pipeline (``inference.reasoning.pipeline``):
    the clip's session (media decoded and encoded once, kept for the next item when it is the
    same clip), then the one ``analyze``. The model is loaded at the first clip that decodes, so
    a run left with only bad items loads none."""

    def __init__(self, load: Callable[[], Any], settings: BatchSettings, limits) -> None:
        self._load = load
        self.loaded = None
        self.load_s = 0.0
        self.settings = settings
        self.limits = limits
        self._clip_key: tuple[str, str | None] | None = None
        self._session = None

    def session(self, entry: ManifestEntry) -> tuple[Any, dict[str, float]]:
        """(ClipSession of the entry's clip, timings of what was done for this item)."""
        from inference.media import load_media
        from inference.reasoning.pipeline import ClipSession

        key = (str(entry.video), str(entry.audio) if entry.audio else None)
        if key == self._clip_key:
            return self._session, {"media_s": 0.0, "encode_s": 0.0}
        self._clip_key, self._session = None, None
        t0 = time.perf_counter()
        media = load_media(entry.video, self.limits, audio_path=entry.audio)
        t1 = time.perf_counter()
        if self.loaded is None:
            self.loaded = self._load()
            self.load_s = round(time.perf_counter() - t1, 3)
        session = ClipSession(self.loaded, media)
        session.encoded  # noqa: B018 -- encode now, so its time is this item's
        self._session, self._clip_key = session, key
        return session, {"media_s": t1 - t0, "encode_s": session.encode_s}

    def analysis_settings(self, item: WorkItem):
        from inference.reasoning.pipeline import AnalysisSettings

        s, entry = self.settings, item.entry
        return AnalysisSettings(
            prompt_kind=entry.prompt_kind,
            question=entry.question,
            options=tuple(entry.options or ()),
            reference_answer=entry.reference_answer,
            max_new_tokens=s.max_new_tokens,
            do_sample=s.sample or item.sample > 0,
            temperature=s.temperature,
            top_p=s.top_p,
            seed=s.seed + item.sample,
            perturbations=s.perturb if s.score else (),
            top_t=s.top_t,
            score_seed=s.seed,
            clip_spans=s.clip_spans,
        )

    def __call__(self, item: WorkItem):
        from inference.reasoning.pipeline import analysis_trace, analyze

        if item.entry.problem:
            raise BatchError(item.entry.problem)
        session, timings = self.session(item.entry)
        trace = analysis_trace(analyze(session, self.analysis_settings(item)))
        # The clip was decoded and encoded once for all its items here: say what this item cost.
        trace.timings.update({k: round(v, 4) for k, v in timings.items()})
        trace.id = item.trace_id
        trace.source = "batch"
        trace.clip.path = str(item.entry.video)
        trace.decoding["sample_index"] = item.sample
        return trace


def failure_record(item: WorkItem, exc: BaseException, rank: int) -> dict[str, Any]:
    reason = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
    return {
        "item_id": item.item_id,
        "trace_id": item.trace_id,
        "line": item.entry.line,
        "video": str(item.entry.video),
        "question": item.entry.question,
        "sample": item.sample,
        "reason": reason,
        "error": type(exc).__name__,
        "rank": rank,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def work_through(
    items: Sequence[WorkItem],
    make_trace: Callable[[WorkItem], Any],
    ledger: Ledger,
    report: RankReport,
    bar=None,
    on_item: Callable[[], None] | None = None,
    log: Callable[[str], None] = print,
) -> RankReport:
    """Make each item's Trace and append it to this process's shard; a failure is recorded
    with its reason and the next item goes on."""
    rank = report.rank
    ledger.shards.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
    traces_fd = os.open(ledger.trace_shard(rank), flags, 0o644)
    failures_fd = os.open(ledger.failure_shard(rank), flags, 0o644)
    start = time.perf_counter()
    try:
        for item in items:
            try:
                trace = make_trace(item)
            except Exception as exc:  # one bad item never stops the run
                if not isinstance(exc, UserError):
                    log(traceback.format_exc().rstrip())
                    _free_accelerator_memory()
                record = failure_record(item, exc, rank)
                append_line(failures_fd, record)
                report.failed += 1
                log(f"[rank {rank}] failed: line {item.entry.line} sample {item.sample}: {record['reason']}")
            else:
                append_line(traces_fd, trace.to_dict())
                report.done += 1
                report.tokens += len(trace.decoding.get("generated_ids") or [])
            if bar is not None:
                bar.update(1)
            if on_item is not None:
                on_item()
    finally:
        os.close(traces_fd)
        os.close(failures_fd)
        report.work_s = round(time.perf_counter() - start, 3)
    return report


def _free_accelerator_memory() -> None:
    with contextlib.suppress(Exception):
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


# --------------------------------------------------------------------------- the command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", required=True, help="JSONL: one clip + question per line")
    parser.add_argument("--out", required=True, help="output folder (created; a rerun resumes it)")
    parser.add_argument(
        "--samples-per-question",
        type=int,
        default=1,
        help="reasoning paths per question (sample 0 greedy unless --sample; sample k samples with seed+k)",
    )
    parser.add_argument(
        "--prompt",
        choices=["reasoning", "direct", "synthdec"],
        default="reasoning",
        help="prompt kind for entries without a 'prompt' field (SynthDec questions are recognised)",
    )
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--sample", action="store_true", help="sample (top-p) sample 0 too")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0, help="base seed: sample k uses seed + k")
    parser.add_argument("--score", action="store_true", help="add the contrastive step scores")
    parser.add_argument("--perturb", default="noise", help="comma-separated: noise,mute,shuffle")
    parser.add_argument("--top-t", type=int, default=3, help="flag this many highest-scoring steps")
    parser.add_argument(
        "--no-clip-spans",
        action="store_true",
        help="skip each step's clip span (the moment it attends to most; costs about one scoring pass)",
    )
    parser.add_argument("--max-duration-s", type=float, default=600.0)
    parser.add_argument("--max-file-mb", type=float, default=500.0)
    parser.add_argument(
        "--no-retry-failures",
        action="store_true",
        help="leave items that failed in an earlier run failed (default: try them again)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=0,
        help="CPU threads per process (default: torch's choice; under accelerate, cores / processes)",
    )
    ModelOptions.add_arguments(parser)


def settings_from_args(args: argparse.Namespace, model: ModelOptions) -> BatchSettings:
    """``model``: the options with the checkpoint chosen (``ModelOptions.with_checkpoint``)."""
    from inference.reasoning.perturb import perturbation_names

    perturb = perturbation_names(args.perturb)
    return BatchSettings(
        checkpoint=model.checkpoint,
        revision=model.revision,
        quantization=model.quantization,
        adapter=model.adapter,
        sources=(model.vision_source, model.whisper_source, model.qformer_source),
        max_new_tokens=args.max_new_tokens,
        sample=args.sample,
        temperature=args.temperature,
        top_p=args.top_p,
        seed=args.seed,
        score=args.score,
        perturb=perturb,
        top_t=args.top_t,
        clip_spans=not args.no_clip_spans,
    )


def check_args(args: argparse.Namespace) -> None:
    if args.samples_per_question < 1:
        raise BatchError("--samples-per-question must be 1 or more")
    if args.max_new_tokens < 1:
        raise BatchError("--max-new-tokens must be 1 or more")
    if (args.sample or args.samples_per_question > 1) and not (0 < args.top_p <= 1 and args.temperature > 0):
        raise BatchError("sampling needs 0 < --top-p <= 1 and --temperature above 0")
    if args.score:
        from inference.reasoning.perturb import get_perturbation, perturbation_names

        names = perturbation_names(args.perturb)
        if not names:
            raise BatchError("--score needs at least one --perturb name, e.g. noise")
        for name in names:
            get_perturbation(name)


def process_state(device: str):
    """accelerate's view of this process: rank, world size, device. Plain ``python`` is world 1.
    CPU processes must say so (``cpu=True``), or accelerate treats a torchrun launch on a machine
    without CUDA as one process per rank that knows of no other."""
    import torch
    from accelerate import PartialState

    cpu = (
        device == "cpu"
        or not torch.cuda.is_available()
        or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    )
    from datetime import timedelta

    return PartialState(cpu=cpu, timeout=timedelta(seconds=PLAN_TIMEOUT_S))


def share_plan(state, payload: dict[str, Any] | None) -> dict[str, Any]:
    """Process 0's plan (or its error) to every process: the run's one collective."""
    if state.num_processes == 1:
        assert payload is not None
        return payload
    from accelerate.utils import broadcast_object_list

    box = [payload if state.is_main_process else None]
    broadcast_object_list(box, from_process=0)
    return box[0]


def run(args: argparse.Namespace) -> int:
    wall_start = time.perf_counter()
    check_args(args)
    state = process_state(args.device)
    if args.torch_threads > 0:
        import torch

        torch.set_num_threads(args.torch_threads)
    rank, world = state.process_index, state.num_processes
    log = _log
    entries = read_manifest(args.manifest, args.prompt)
    model = ModelOptions.from_args(args).with_checkpoint(
        "cuda" if state.device.type == "cuda" else args.device,
        log=log if rank == 0 else (lambda m: None),
    )
    settings = settings_from_args(args, model)
    items, duplicates = plan_items(entries, args.samples_per_question, settings.fingerprint())
    ledger = Ledger(args.out)

    payload, watcher = None, None
    if rank == 0:
        try:
            payload = plan_run(
                ledger, settings, items, Path(args.manifest), retry_failures=not args.no_retry_failures
            )
            watcher = LedgerWatcher(ledger)  # counts what every process appends from now on
        except UserError as exc:
            payload = {"error": str(exc)}
    try:
        plan = share_plan(state, payload)
        if "error" in plan:
            raise BatchError(plan["error"])
        if rank != 0 and ledger.run_id() != plan["run_id"]:
            raise BatchError(
                f"process {rank} does not see process 0's {ledger.out / 'run.json'}: "
                "--out must be on a file system every node shares"
            )
        mine = [items[i] for i in shard(plan["pending"], rank, world)]
        report = RankReport(run_id=plan["run_id"], rank=rank, assigned=len(mine))
        progress = not args.no_progress
        bar = _bar(len(mine), f"process {rank}", state.local_process_index) if progress else None
        overall = None
        if rank == 0 and world > 1 and progress:
            overall = _bar(len(plan["pending"]), "all processes", _local_world())

        def refresh() -> None:
            if overall is not None and watcher is not None:
                overall.n = min(watcher.poll(), overall.total)
                overall.refresh()

        if mine:
            from inference.media import MediaLimits

            def load():
                loaded = _load_model(model, state)
                if loaded.is_tiny and rank == 0:
                    log("note: tiny demo model: the traces are meaningless (use them to try the workflow)")
                return loaded

            limits = MediaLimits(max_duration_s=args.max_duration_s, max_file_mb=args.max_file_mb)
            worker = Worker(load, settings, limits)
            work_through(mine, worker, ledger, report, bar, refresh, log)
            report.load_s = worker.load_s
        if bar is not None:
            bar.close()
        write_atomic(ledger.report_path(rank), json.dumps(asdict(report)) + "\n")
        if rank != 0:
            return 0
        reports = wait_for_reports(ledger, plan["run_id"], world, refresh)
        if overall is not None:
            refresh()
            overall.close()
        summary = summarize(ledger, items, plan, reports, duplicates, time.perf_counter() - wall_start)
        print(format_summary(summary))
        return 0
    finally:
        if rank == 0:
            ledger.unlock()


def wait_for_reports(
    ledger: Ledger, run_id: str, world: int, tick: Callable[[], None] = lambda: None
) -> list[dict[str, Any]]:
    """Process 0 waits for every process's report of this run (a process that dies ends the
    launch: torchrun stops the others)."""
    reports: dict[int, dict[str, Any]] = {}
    while len(reports) < world:
        for rank in range(world):
            if rank in reports:
                continue
            try:
                data = json.loads(ledger.report_path(rank).read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            if data.get("run_id") == run_id:
                reports[rank] = data
        tick()
        if len(reports) < world:
            time.sleep(POLL_S)
    return [reports[r] for r in range(world)]


def format_summary(s: dict[str, Any]) -> str:
    lines = [
        f"batch {s['run_id']}: {s['items']} items, {s['processes']} process(es), {s['wall_s']:.1f} s",
        f"  made now {s['done_now']}, already done {s['already_done']}, failed now {s['failed_now']}"
        + (f", earlier failures not retried {s['not_retried']}" if s["not_retried"] else ""),
        f"  finished {s['finished']} / {s['items']}, failed {s['failed']}, missing {s['missing']}",
        f"  reasoning tokens generated {s['tokens']}, {s['items_per_minute']} items/min",
    ]
    if s["repaired_bytes"]:
        lines.append(f"  cut {s['repaired_bytes']} bytes of unfinished lines left by a killed process")
    for f in s["failures"]:
        lines.append(
            f"  failed: line {f['line']} sample {f['sample']} ({Path(f['video']).name}): {f['reason']}"
        )
    lines.append(f"traces: {s['traces']} ({s['traces_in_file']} traces)")
    lines.append(f"  import: python -m annotation_db --db annotations.db import {s['traces']}")
    return "\n".join(lines)


def _load_model(model: ModelOptions, state):
    """One model per process, on this process's device (accelerate made it the current CUDA
    device, so "cuda" is this process's GPU)."""
    device = model.device
    if device == "auto":
        device = "cuda" if state.device.type == "cuda" else "cpu"
    return model.load(device=device)


def _local_world() -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def _bar(total: int, desc: str, position: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, position=position, unit="item", leave=True, dynamic_ncols=True)


def _log(message: str) -> None:
    """To stderr without breaking the progress bars."""
    from tqdm.auto import tqdm

    tqdm.write(message, file=sys.stderr)
