"""``python -m inference batch``: Traces for every question of a manifest, on one or many GPUs.

    python -m inference batch --manifest clips.jsonl --out runs/b1 [--samples-per-question 10]
    accelerate launch --config_file examples/accelerate/one_node_multi_gpu.yaml \\
        -m inference batch --manifest clips.jsonl --out runs/b1

Data parallel: every process (``accelerate launch`` starts one per GPU, on one node or many)
loads its own model and works through its share of the items. An item is one manifest entry
and one sample index; its id is a hash of the entry's canonical JSON, the sample index and the
settings that shape a trace (model, decoding, scoring), so the Trace id (``batch-<item id>``) is
the same whenever the same item is made again and re-importing into the store is a no-op.

The output folder is the ledger (one run at a time per folder; every node must see it, e.g. a
shared file system)::

    OUT/run.json                    settings of the run (a resume must pass the same ones)
    OUT/shards/traces-rank{r}.jsonl  Trace JSON lines, appended only by process r
    OUT/shards/failures-rank{r}.jsonl  one line per failed item: id, clip, reason
    OUT/shards/report-rank{r}.json  process r's figures for the last run
    OUT/traces.jsonl                every finished trace in manifest order (for the store)
    OUT/failures.jsonl              the items that are failed now (latest reason each)
    OUT/summary.json                the last run's summary

Exactly once: before any work, process 0 takes the folder's lock, cuts any unfinished last line
off every shard (a process killed inside a write), reads which items are finished and hands
out the rest (process r of W takes pending[r::W]); an item is finished once its whole line is in
a shard, written with one ``write`` on an O_APPEND descriptor and fsynced. A killed process's
item in progress is therefore redone by the next run, and a finished one never is.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import secrets
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from inference.errors import UserError
from inference.model_args import add_model_arguments

TRACE_ID_PREFIX = "batch-"
ITEM_ID_HEX = 32  # 128 bits of sha256: no collision in any realistic manifest, short in the UI
POLL_S = 0.5  # how often process 0 looks at the ledger while the others finish
# The one collective (the plan handed out by process 0) waits while process 0 scans the ledger;
# a large folder on a network file system can take minutes, torch's default is 30 min.
PLAN_TIMEOUT_S = 3 * 3600


class BatchError(UserError):
    """The manifest, the output folder or the flags cannot make a batch run."""


# --------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class ManifestEntry:
    """One manifest line, checked and resolved. ``raw`` is the line's JSON as written: its
    canonical form is what identifies the entry (so moving the manifest keeps the ids)."""

    line: int  # 1-based line number in the manifest
    raw: dict[str, Any]
    video: Path  # absolute
    audio: Path | None
    question: str
    options: list[str] | None
    prompt_kind: str
    reference_answer: str | None
    # Why no prompt can be made (e.g. no question, as in a manifest that only lists clips):
    # each of the entry's items then fails with this reason and the others go on.
    problem: str | None = None


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def parse_entry(raw: Any, line: int, base: Path, default_prompt: str) -> ManifestEntry:
    """Check one manifest entry (format of ``../shared/clips/manifest.jsonl``: ``file`` relative
    to the manifest's folder, or ``video`` relative or absolute; ``question``; ``options`` list or
    null; ``reference_answer``; optional ``prompt`` reasoning|direct|synthdec and ``audio``).

    With no ``prompt``, an entry whose question is the SynthDec text and has no options is a
    SynthDec entry (as ``annotation_db import-published`` reads the same manifest); any other
    takes ``default_prompt``. A malformed entry is an error; an entry no prompt can be made
    from (no question, options a prompt kind cannot take) carries the reason in ``problem``.
    The files are not opened here: a missing clip is an item failure.
    """
    from inference.prompts import SYNTHDEC, PromptError, build_user_text
    from inference.trace import PROMPT_KINDS

    where = f"manifest line {line}"
    if not isinstance(raw, dict):
        raise BatchError(f"{where}: an entry must be a JSON object")
    name = raw.get("video", raw.get("file"))
    if not isinstance(name, str) or not name.strip():
        raise BatchError(f'{where}: give the clip as "file" (relative to the manifest) or "video" (a path)')
    question = raw.get("question") or ""  # null: a clip listed without a question
    options = raw.get("options")
    if not isinstance(question, str):
        raise BatchError(f"{where}: question must be a string or null")
    if options is not None and (
        not isinstance(options, list) or not all(isinstance(o, str) for o in options)
    ):
        raise BatchError(f"{where}: options must be a list of strings or null")
    kind = raw.get("prompt")
    if kind is None:
        kind = "synthdec" if not options and question.strip() == SYNTHDEC.template else default_prompt
    if kind not in PROMPT_KINDS:
        raise BatchError(f"{where}: prompt must be one of {', '.join(PROMPT_KINDS)}, not {kind!r}")
    if kind == "synthdec" and not question.strip():
        question = SYNTHDEC.template  # what the model is asked, so the store shows it
    problem = None
    try:
        build_user_text(kind, question, options)
    except PromptError as exc:
        problem = f"{where}: {exc}"
    reference = raw.get("reference_answer")
    if reference is not None and not isinstance(reference, str):
        raise BatchError(f"{where}: reference_answer must be a string or null")
    audio = raw.get("audio")
    if audio is not None and not isinstance(audio, str):
        raise BatchError(f"{where}: audio must be a path or null")
    return ManifestEntry(
        line=line,
        raw=raw,
        video=(base / name).absolute(),
        audio=(base / audio).absolute() if audio else None,
        question=question,
        options=list(options) if options else None,
        prompt_kind=kind,
        reference_answer=reference,
        problem=problem,
    )


def read_manifest(path: str | Path, default_prompt: str = "reasoning") -> list[ManifestEntry]:
    """Every entry of a JSONL manifest (blank lines skipped). A malformed line is an error
    naming it, raised before any model is loaded."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BatchError(f"{path}: no such manifest; check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BatchError(f"{path}: cannot read the manifest ({exc})") from None
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BatchError(f"manifest line {number}: not JSON ({exc.msg} at column {exc.colno})") from None
        entries.append(parse_entry(raw, number, path.parent.absolute(), default_prompt))
    if not entries:
        raise BatchError(f"{path}: the manifest has no entries")
    return entries


# --------------------------------------------------------------------------- work items


@dataclass(frozen=True)
class BatchSettings:
    """What shapes a trace besides its entry and sample index: part of every item id, and a
    resume into the same folder must pass the same values. Device, progress bars, limits and
    the number of samples are not here: they never change a finished trace."""

    checkpoint: str  # as resolved (the tiny demo model's folder when none is given)
    revision: str | None = None
    quantization: str = "auto"
    adapter: str | None = None
    sources: tuple[str | None, ...] = (None, None, None)  # vision, whisper, qformer overrides
    max_new_tokens: int = 512  # DecodingSettings' default (the official max_tokens)
    sample: bool = False  # sample 0 greedy (official inference); True: every sample samples
    temperature: float = 1.0
    top_p: float = 0.9  # official top_p; matters only when sampling
    seed: int = 0  # sample k draws with seed + k
    score: bool = False
    perturb: tuple[str, ...] = ("noise",)  # the paper's contrastive perturbation
    top_t: int = 3

    def fingerprint(self) -> str:
        return hashlib.sha256(canonical_json(asdict(self)).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class WorkItem:
    index: int  # position in the plan: entries in manifest order, samples within
    entry: ManifestEntry
    sample: int
    item_id: str

    @property
    def trace_id(self) -> str:
        return TRACE_ID_PREFIX + self.item_id


def item_id(raw: dict[str, Any], sample: int, fingerprint: str) -> str:
    blob = canonical_json({"entry": raw, "sample": sample, "settings": fingerprint})
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:ITEM_ID_HEX]


def plan_items(
    entries: Sequence[ManifestEntry], samples: int, fingerprint: str
) -> tuple[list[WorkItem], int]:
    """(items, number of duplicates dropped): a manifest line repeated word for word is one
    entry (same id), made once."""
    items: list[WorkItem] = []
    seen: set[str] = set()
    duplicates = 0
    for entry in entries:
        for sample in range(samples):
            key = item_id(entry.raw, sample, fingerprint)
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            items.append(WorkItem(len(items), entry, sample, key))
    return items, duplicates


def shard(pending: Sequence[int], rank: int, world: int) -> list[int]:
    """Process ``rank``'s share: every ``world``-th pending item. Consecutive samples of one
    entry stay consecutive within a share, so a process decodes a clip once for them."""
    return list(pending[rank::world])


# --------------------------------------------------------------------------- the ledger


def append_line(fd: int, record: dict[str, Any]) -> None:
    """One JSON line onto an O_APPEND descriptor in one write, then fsync: a reader sees the
    line whole or not at all, unless the process dies inside the write, which leaves a tail
    without its newline that ``Ledger.repair`` cuts off before the next run appends."""
    data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    view = memoryview(data)
    while view:  # a regular file takes it in one write; a short write still completes the line
        written = os.write(fd, view)
        view = view[written:]
    os.fsync(fd)


def write_atomic(path: Path, data: str | bytes) -> None:
    """Whole file or the old one: a temp file beside it, fsynced, renamed into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def iter_lines(path: Path, start: int = 0) -> Iterator[tuple[int, bytes]]:
    """(offset, line without newline) for every complete line from ``start``; an unfinished
    last line (no newline) is not yielded."""
    with open(path, "rb") as fh:
        fh.seek(start)
        offset = start
        for line in fh:
            if not line.endswith(b"\n"):
                return
            yield offset, line[:-1]
            offset += len(line)


@dataclass
class LedgerState:
    """What the shards say: finished items (where their line is) and failures."""

    done: dict[str, tuple[Path, int, int]] = field(default_factory=dict)  # item id -> (shard, offset, length)
    failures: dict[str, dict[str, Any]] = field(default_factory=dict)  # item id -> latest failure record
    duplicates: int = 0  # finished lines of an item already finished elsewhere (never written by this tool)
    unreadable: int = 0  # complete lines that are not JSON (a crash of the machine, or an edit)


class Ledger:
    """The output folder: shards, the lock, the merged files (module docstring)."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.shards = self.out / "shards"
        self._lock_fd: int | None = None

    def trace_shard(self, rank: int) -> Path:
        return self.shards / f"traces-rank{rank}.jsonl"

    def failure_shard(self, rank: int) -> Path:
        return self.shards / f"failures-rank{rank}.jsonl"

    def report_path(self, rank: int) -> Path:
        return self.shards / f"report-rank{rank}.json"

    def trace_shards(self) -> list[Path]:
        return sorted(self.shards.glob("traces-rank*.jsonl"), key=_rank_of)

    def failure_shards(self) -> list[Path]:
        return sorted(self.shards.glob("failures-rank*.jsonl"), key=_rank_of)

    # -- run.json and the lock (process 0 only)

    def lock(self) -> None:
        """Hold OUT/.lock for this run: a second run on the same folder would break exactly-once."""
        import fcntl

        self.shards.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.out / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise BatchError(
                f"another batch run is writing to {self.out}; wait for it to finish or pass another --out"
            ) from None
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def check_settings(self, settings: BatchSettings, run_id: str, manifest: Path) -> None:
        """Record the settings, or refuse a resume that would make different traces."""
        path = self.out / "run.json"
        wanted = asdict(settings)
        if path.exists():
            stored = json.loads(path.read_text(encoding="utf-8")).get("settings", {})
            stored_norm = json.loads(canonical_json(stored))
            wanted_norm = json.loads(canonical_json(wanted))
            if stored_norm != wanted_norm:
                diff = ", ".join(
                    f"{k} {stored_norm.get(k)!r} -> {wanted_norm.get(k)!r}"
                    for k in sorted(set(stored_norm) | set(wanted_norm))
                    if stored_norm.get(k) != wanted_norm.get(k)
                )
                raise BatchError(
                    f"{self.out} holds a batch run with other settings ({diff}); "
                    "pass the same flags to resume it, or another --out"
                )
        record = {
            "settings": wanted,
            "fingerprint": settings.fingerprint(),
            "run_id": run_id,
            "manifest": str(manifest.absolute()),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        write_atomic(path, json.dumps(record, indent=2) + "\n")

    def run_id(self) -> str | None:
        try:
            return json.loads((self.out / "run.json").read_text(encoding="utf-8")).get("run_id")
        except (OSError, json.JSONDecodeError):
            return None

    # -- shards

    def repair(self) -> int:
        """Cut the unfinished last line (no newline) off every shard; returns the bytes cut.
        Only while no process writes (process 0 under the lock, before handing out work)."""
        cut = 0
        for path in [*self.trace_shards(), *self.failure_shards()]:
            size = path.stat().st_size
            if size == 0:
                continue
            with open(path, "rb+") as fh:
                keep = size
                while keep > 0:  # back to the last newline, 64 KiB at a time
                    step = min(keep, 65536)
                    fh.seek(keep - step)
                    chunk = fh.read(step)
                    at = chunk.rfind(b"\n")
                    if at >= 0:
                        keep = keep - step + at + 1
                        break
                    keep -= step
                if keep != size:
                    fh.truncate(keep)
                    os.fsync(fh.fileno())
                    cut += size - keep
        return cut

    def scan(self) -> LedgerState:
        state = LedgerState()
        for path in self.trace_shards():
            for offset, line in iter_lines(path):
                if not line.strip():
                    continue
                try:
                    trace_id = json.loads(line).get("id", "")
                except (json.JSONDecodeError, AttributeError):
                    state.unreadable += 1
                    continue
                if not isinstance(trace_id, str) or not trace_id.startswith(TRACE_ID_PREFIX):
                    state.unreadable += 1
                    continue
                key = trace_id[len(TRACE_ID_PREFIX) :]
                if key in state.done:
                    state.duplicates += 1
                    continue
                state.done[key] = (path, offset, len(line))
        for path in self.failure_shards():
            for _, line in iter_lines(path):
                try:
                    record = json.loads(line)
                    state.failures[record["item_id"]] = record
                except (json.JSONDecodeError, KeyError, TypeError):
                    state.unreadable += 1
        return state

    def read_line(self, where: tuple[Path, int, int]) -> bytes:
        path, offset, length = where
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read(length)


def _rank_of(path: Path) -> int:
    digits = "".join(ch for ch in path.stem.rsplit("rank", 1)[-1] if ch.isdigit())
    return int(digits or 0)


class LedgerWatcher:
    """Counts lines appended to the shards since it was made (the overall progress), reading
    only the new bytes of each file."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.offsets: dict[Path, int] = {}
        self.count = 0
        self._baseline = True
        self.poll()
        self.count, self._baseline = 0, False

    def poll(self) -> int:
        for path in [*self.ledger.trace_shards(), *self.ledger.failure_shards()]:
            start = self.offsets.get(path, 0)
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            if size <= start:
                continue
            end = start
            for offset, line in iter_lines(path, start):
                end = offset + len(line) + 1
                self.count += 1
            self.offsets[path] = end
        return self.count


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
    """Makes the Trace of one item: the clip's media (kept for the next item when it is the
    same clip), encoded once per clip, the reasoning, then the scores when asked. The model is
    loaded at the first clip that decodes, so a run left with only bad items loads none."""

    def __init__(self, load: Callable[[], Any], settings: BatchSettings, limits) -> None:
        self._load = load
        self.loaded = None
        self.load_s = 0.0
        self.settings = settings
        self.limits = limits
        self._clip_key: tuple[str, str | None] | None = None
        self._media = None
        self._encoded = None

    def media(self, entry: ManifestEntry) -> tuple[Any, Any, dict[str, float]]:
        """(MediaInputs, EncodedMedia, timings of what was done for this item)."""
        from inference.media import load_media

        key = (str(entry.video), str(entry.audio) if entry.audio else None)
        if key == self._clip_key:
            return self._media, self._encoded, {"media_s": 0.0, "encode_s": 0.0}
        self._clip_key, self._media, self._encoded = None, None, None
        t0 = time.perf_counter()
        media = load_media(entry.video, self.limits, audio_path=entry.audio)
        t1 = time.perf_counter()
        if self.loaded is None:
            self.loaded = self._load()
            self.load_s = round(time.perf_counter() - t1, 3)
            t1 = time.perf_counter()
        encoded = self.loaded.model.encode_media(media.pixel_values, media.spectrogram, media.real_time)
        t2 = time.perf_counter()
        self._media, self._encoded, self._clip_key = media, encoded, key
        return media, encoded, {"media_s": t1 - t0, "encode_s": t2 - t1}

    def __call__(self, item: WorkItem):
        from inference.generate import DecodingSettings, DoneEvent, ReasoningRequest, stream_reasoning

        s, entry = self.settings, item.entry
        if entry.problem:
            raise BatchError(entry.problem)
        media, encoded, timings = self.media(entry)
        request = ReasoningRequest(
            question=entry.question,
            options=entry.options,
            prompt_kind=entry.prompt_kind,
            reference_answer=entry.reference_answer,
            decoding=DecodingSettings(
                max_new_tokens=s.max_new_tokens,
                do_sample=s.sample or item.sample > 0,
                temperature=s.temperature,
                top_p=s.top_p,
                seed=s.seed + item.sample,
            ),
        )
        trace = None
        for event in stream_reasoning(self.loaded, media, request, encoded=encoded):
            if isinstance(event, DoneEvent):
                trace = event.trace
        assert trace is not None
        # The clip was decoded and encoded once for all its items here: say what this item cost.
        trace.timings.update({k: round(v, 4) for k, v in timings.items()})
        if s.score:
            from inference.scoring import score_trace

            score_trace(
                self.loaded,
                media,
                trace,
                perturbations=s.perturb,
                top_t=s.top_t,
                seed=s.seed,
                encoded=encoded,
            )
        trace.id = item.trace_id
        trace.source = "batch"
        trace.clip.path = str(entry.video)
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
    add_model_arguments(parser)


def settings_from_args(args: argparse.Namespace, checkpoint: str) -> BatchSettings:
    perturb = tuple(p.strip() for p in args.perturb.split(",") if p.strip())
    return BatchSettings(
        checkpoint=checkpoint,
        revision=args.revision,
        quantization=args.quantization,
        adapter=args.adapter,
        sources=(args.vision_source, args.whisper_source, args.qformer_source),
        max_new_tokens=args.max_new_tokens,
        sample=args.sample,
        temperature=args.temperature,
        top_p=args.top_p,
        seed=args.seed,
        score=args.score,
        perturb=perturb,
        top_t=args.top_t,
    )


def check_args(args: argparse.Namespace) -> None:
    if args.samples_per_question < 1:
        raise BatchError("--samples-per-question must be 1 or more")
    if args.max_new_tokens < 1:
        raise BatchError("--max-new-tokens must be 1 or more")
    if (args.sample or args.samples_per_question > 1) and not (0 < args.top_p <= 1 and args.temperature > 0):
        raise BatchError("sampling needs 0 < --top-p <= 1 and --temperature above 0")
    if args.score:
        from inference.perturb import get_perturbation

        names = [p.strip() for p in args.perturb.split(",") if p.strip()]
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
    from inference.model_args import choose_checkpoint

    wall_start = time.perf_counter()
    check_args(args)
    state = process_state(args.device)
    if args.torch_threads > 0:
        import torch

        torch.set_num_threads(args.torch_threads)
    rank, world = state.process_index, state.num_processes
    log = _log
    entries = read_manifest(args.manifest, args.prompt)
    checkpoint = choose_checkpoint(
        args.checkpoint,
        "cuda" if state.device.type == "cuda" else args.device,
        log=log if rank == 0 else (lambda m: None),
    )
    settings = settings_from_args(args, checkpoint)
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
                loaded = _load_model(args, checkpoint, state)
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


def plan_run(
    ledger: Ledger,
    settings: BatchSettings,
    items: Sequence[WorkItem],
    manifest: Path,
    retry_failures: bool = True,
) -> dict[str, Any]:
    """Process 0, before any work: lock the folder, check the settings, cut unfinished lines,
    and list the items still to make (indices into ``items``)."""
    ledger.lock()
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(4)
    ledger.check_settings(settings, run_id, manifest)
    cut = ledger.repair()
    found = ledger.scan()
    pending, done_before, not_retried = [], 0, 0
    for item in items:
        if item.item_id in found.done:
            done_before += 1
        elif item.item_id in found.failures and not retry_failures:
            not_retried += 1
        else:
            pending.append(item.index)
    return {
        "run_id": run_id,
        "pending": pending,
        "done_before": done_before,
        "not_retried": not_retried,
        "repaired_bytes": cut,
    }


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


def summarize(
    ledger: Ledger,
    items: Sequence[WorkItem],
    plan: dict[str, Any],
    reports: Sequence[dict[str, Any]],
    duplicates_in_manifest: int,
    wall_s: float,
) -> dict[str, Any]:
    """Read the ledger once more, write traces.jsonl, failures.jsonl and summary.json."""
    found = ledger.scan()
    failures = []
    lines = []
    known = set()
    for item in items:
        known.add(item.item_id)
        if item.item_id in found.done:
            lines.append(ledger.read_line(found.done[item.item_id]))
        elif item.item_id in found.failures:
            failures.append(found.failures[item.item_id])
    # Traces of items no longer in the manifest (an earlier manifest) are kept, after the rest.
    for key, where in found.done.items():
        if key not in known:
            lines.append(ledger.read_line(where))
    write_atomic(ledger.out / "traces.jsonl", b"".join(line + b"\n" for line in lines))
    write_atomic(
        ledger.out / "failures.jsonl", "".join(json.dumps(f, ensure_ascii=False) + "\n" for f in failures)
    )
    done_now = sum(r["done"] for r in reports)
    failed_now = sum(r["failed"] for r in reports)
    finished = sum(1 for item in items if item.item_id in found.done)
    summary = {
        "run_id": plan["run_id"],
        "out": str(ledger.out),
        "processes": len(reports),
        "items": len(items),
        "done_now": done_now,
        "already_done": plan["done_before"],
        "failed_now": failed_now,
        "not_retried": plan["not_retried"],
        "finished": finished,
        "failed": len(failures),
        "missing": len(items) - finished - len(failures),
        "failures": [
            {k: f[k] for k in ("item_id", "line", "video", "sample", "reason") if k in f} for f in failures
        ],
        "tokens": sum(r["tokens"] for r in reports),
        "wall_s": round(wall_s, 3),
        "items_per_minute": round(60.0 * (done_now + failed_now) / wall_s, 3) if wall_s > 0 else None,
        "duplicate_manifest_entries": duplicates_in_manifest,
        "duplicate_lines_ignored": found.duplicates,
        "unreadable_lines_ignored": found.unreadable,
        "repaired_bytes": plan["repaired_bytes"],
        "traces": str(ledger.out / "traces.jsonl"),
        "traces_in_file": len(lines),
        "ranks": list(reports),
    }
    write_atomic(ledger.out / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return summary


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


def _load_model(args: argparse.Namespace, checkpoint: str, state):
    """One model per process, on this process's device (accelerate made it the current CUDA
    device, so "cuda" is this process's GPU)."""
    from inference.config import ComponentSources
    from inference.loading import LoadSettings, load_model

    device = args.device
    if device == "auto":
        device = "cuda" if state.device.type == "cuda" else "cpu"
    return load_model(
        LoadSettings(
            checkpoint=checkpoint,
            revision=args.revision,
            quantization=args.quantization,
            device=device,
            adapter=args.adapter,
            sources=ComponentSources(
                vision=args.vision_source, whisper=args.whisper_source, qformer=args.qformer_source
            ),
        )
    )


def _local_world() -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def _bar(total: int, desc: str, position: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, position=position, unit="item", leave=True, dynamic_ncols=True)


def _log(message: str) -> None:
    """To stderr without breaking the progress bars."""
    from tqdm.auto import tqdm

    tqdm.write(message, file=sys.stderr)
