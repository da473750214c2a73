"""Manifest entries, item ids and the split of the work between processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference.batch.items import (
    BatchError,
    BatchSettings,
    ManifestEntry,
    plan_items,
    read_manifest,
    shard,
)
from inference.model.prompts import SYNTHDEC
from tests.batch.conftest import write_manifest

SETTINGS = BatchSettings(checkpoint="tiny")


def test_entries_resolve_paths_prompts_and_answers(tmp_path):
    rows = [
        {"file": "a.mp4", "question": "Who?", "options": ["x", "y"], "reference_answer": "B", "kind": "k"},
        {"video": "/data/b.mp4", "question": SYNTHDEC.template, "options": None, "reference_answer": "YES"},
        {"video": "sub/c.mp4", "question": "Why?", "options": None, "prompt": "reasoning", "audio": "c.wav"},
        {"file": "d.mp4", "question": "Which?", "options": ["p", "q"], "prompt": "direct"},
        {"file": "e.mp4", "prompt": "synthdec"},
    ]
    manifest = write_manifest(tmp_path / "m.jsonl", rows)
    assert read_manifest(manifest) == [
        ManifestEntry(1, rows[0], tmp_path / "a.mp4", None, "Who?", ["x", "y"], "reasoning", "B"),
        ManifestEntry(2, rows[1], Path("/data/b.mp4"), None, SYNTHDEC.template, None, "synthdec", "YES"),
        ManifestEntry(
            3, rows[2], tmp_path / "sub/c.mp4", tmp_path / "c.wav", "Why?", None, "reasoning", None
        ),
        ManifestEntry(4, rows[3], tmp_path / "d.mp4", None, "Which?", ["p", "q"], "direct", None),
        ManifestEntry(5, rows[4], tmp_path / "e.mp4", None, SYNTHDEC.template, None, "synthdec", None),
    ]


def test_entries_without_a_prompt_take_the_default(tmp_path):
    manifest = write_manifest(
        tmp_path / "m.jsonl", [{"file": "a.mp4", "question": "Q?", "options": ["x", "y"]}]
    )
    assert [e.prompt_kind for e in read_manifest(manifest, default_prompt="direct")] == ["direct"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "{not json",
            "manifest line 2: not JSON (Expecting property name enclosed in double quotes at column 2)",
        ),
        ('["a.mp4"]', "manifest line 2: an entry must be a JSON object"),
        (
            '{"question": "Q?"}',
            'manifest line 2: give the clip as "file" (relative to the manifest) or "video" (a path)',
        ),
        (
            '{"file": "a.mp4", "question": "Q?", "options": "x"}',
            "manifest line 2: options must be a list of strings or null",
        ),
        (
            '{"file": "a.mp4", "question": "Q?", "prompt": "chat"}',
            "manifest line 2: prompt must be one of reasoning, direct, synthdec, not 'chat'",
        ),
        (
            '{"file": "a.mp4", "question": "Q?", "reference_answer": 1}',
            "manifest line 2: reference_answer must be a string or null",
        ),
    ],
)
def test_a_malformed_line_is_an_error_naming_it(tmp_path, line, message):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"file": "ok.mp4", "question": "Q?", "options": null}\n' + line + "\n")
    with pytest.raises(BatchError) as caught:
        read_manifest(manifest)
    assert str(caught.value) == message


def test_an_entry_no_prompt_can_be_made_from_carries_its_reason(tmp_path):
    rows = [
        {"file": "a.mp4", "question": None, "options": None},  # a clip listed without a question
        {"file": "b.mp4", "question": "Q?", "prompt": "direct"},
        {"file": "c.mp4", "question": "Q?", "options": ["x", "y"]},
    ]
    manifest = write_manifest(tmp_path / "m.jsonl", rows)
    assert [e.problem for e in read_manifest(manifest)] == [
        'manifest line 1: no question; add one, or "prompt": "synthdec" for the SynthDec yes/no question',
        "manifest line 2: the direct prompt needs answer options; add options or use the reasoning prompt",
        None,
    ]


def test_missing_or_empty_manifest(tmp_path):
    with pytest.raises(BatchError, match="no such manifest"):
        read_manifest(tmp_path / "none.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(BatchError, match="the manifest has no entries"):
        read_manifest(tmp_path / "empty.jsonl")


def test_item_ids_depend_on_entry_sample_and_settings_not_on_where_the_manifest_is(tmp_path):
    rows = [{"file": "a.mp4", "question": "Q?", "options": ["x", "y"]}, {"file": "b.mp4", "question": "Q?"}]
    one = write_manifest(tmp_path / "m.jsonl", rows)
    (tmp_path / "moved").mkdir()
    two = write_manifest(tmp_path / "moved" / "m.jsonl", [{**rows[0]}, {**rows[1]}])
    fp = SETTINGS.fingerprint()
    ids = [i.item_id for i in plan_items(read_manifest(one), 3, fp)[0]]
    assert len(set(ids)) == 6 and all(len(i) == 32 for i in ids)
    assert [i.item_id for i in plan_items(read_manifest(two), 3, fp)[0]] == ids
    # More samples keep the ids of the first ones (a rerun with more samples adds only the new).
    more = [i.item_id for i in plan_items(read_manifest(one), 4, fp)[0]]
    assert [more[0], more[1], more[2], more[4], more[5], more[6]] == ids
    other = BatchSettings(checkpoint="tiny", max_new_tokens=64).fingerprint()
    assert not set(ids) & {i.item_id for i in plan_items(read_manifest(one), 3, other)[0]}


def test_plan_order_trace_ids_and_duplicate_lines(tmp_path):
    row = {"file": "a.mp4", "question": "Q?", "options": ["x", "y"]}
    manifest = write_manifest(tmp_path / "m.jsonl", [row, {"file": "b.mp4", "question": "Q?"}, row])
    items, duplicates = plan_items(read_manifest(manifest), 2, SETTINGS.fingerprint())
    assert duplicates == 2
    assert [(i.index, i.entry.line, i.sample) for i in items] == [(0, 1, 0), (1, 1, 1), (2, 2, 0), (3, 2, 1)]
    assert [i.trace_id for i in items] == ["batch-" + i.item_id for i in items]


@pytest.mark.parametrize("world", [1, 2, 3, 4, 7])
def test_shards_partition_the_pending_items(world):
    pending = [0, 2, 3, 5, 8, 9, 10, 13, 21]
    shares = [shard(pending, rank, world) for rank in range(world)]
    assert sorted(i for share in shares for i in share) == pending
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_the_shared_clips_manifest_reads(shared_clips):
    entries = read_manifest(shared_clips / "manifest.jsonl")
    raw = [
        json.loads(line)
        for line in (shared_clips / "manifest.jsonl").read_text().splitlines()
        if line.strip()
    ]
    assert [e.video for e in entries] == [(shared_clips / r["file"]).absolute() for r in raw]
    assert [e.prompt_kind for e in entries] == [
        "synthdec" if r["options"] is None and r["question"] == SYNTHDEC.template else "reasoning"
        for r in raw
    ]
    assert "synthdec" in {e.prompt_kind for e in entries}


def test_the_accelerate_config_files_load():
    from accelerate.commands.config.config_args import load_config_from_file

    folder = Path(__file__).resolve().parents[2] / "examples" / "accelerate"
    one = load_config_from_file(str(folder / "one_node_multi_gpu.yaml"))
    many = load_config_from_file(str(folder / "multi_node.yaml"))
    assert (one.distributed_type, one.num_machines, one.num_processes) == ("MULTI_GPU", 1, 8)
    assert (many.distributed_type, many.num_machines, many.num_processes, many.machine_rank) == (
        "MULTI_GPU",
        2,
        16,
        0,
    )
    assert (many.main_process_ip, many.main_process_port, many.rdzv_backend) == ("10.0.0.1", 29500, "static")
