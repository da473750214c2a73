"""Export rules that its consumers depend on: nothing to write, file modes, Step-DPO's prefix
rule and prompt template, trl-dpo's completions, video paths relative to a named root."""

from __future__ import annotations

import json
import os

import pytest

from annotation_db import ExportEmptyError
from annotation_db.cli import main

SHA = "c" * 64
# How the verdicts of a record that alice alone labeled were decided.
ALICE_ALONE = {"label_source": "majority", "adjudicated": False, "n_annotators": 1, "agreement": 1.0}


def test_an_export_with_nothing_to_write_is_one_line_exit_2_and_no_file(store, make_trace, tmp_path, capsys):
    store.add_trace(make_trace("t", ["a", "b"]))
    store.set_label("alice", "t", 0, "accept")  # a stepwise record, but no pair
    out_dir = tmp_path / "out"
    with pytest.raises(ExportEmptyError, match=r"^no labelled steps match the pdpo export"):
        store.export("pdpo", out_dir / "pairs.jsonl")
    store.close()
    code = main(
        ["--db", str(store.path), "export", "--format", "step-dpo", "--out", str(out_dir / "s.parquet")]
    )
    out, err = capsys.readouterr()
    assert (code, out, err.count("\n")) == (2, "", 1)
    assert err.startswith("error: no labelled steps match the step-dpo export with these filters")
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_export_files_honour_the_umask(store, make_trace, tmp_path, umask, mode, suffix):
    store.add_trace(make_trace("t", ["a"]))
    store.set_label("alice", "t", 0, "accept")
    previous = os.umask(umask)
    try:
        store.export("trl-stepwise", tmp_path / f"sw{suffix}")
    finally:
        os.umask(previous)
    assert oct((tmp_path / f"sw{suffix}").stat().st_mode & 0o777) == oct(mode)


def _four_step_trace(make_trace):
    return make_trace(
        "t",
        ["s0", "s1", "s2", "s3"],
        alternatives=[{"step_index": k, "text": f"s{k} again"} for k in range(4)],
    )


def test_step_dpo_keeps_pairs_after_an_accepted_prefix_only(store, make_trace):
    store.add_trace(_four_step_trace(make_trace))
    # s0 accepted, s1 rejected, s2 unlabeled: pairs at 0 and 1 have an accepted prefix; at 2 the
    # prefix holds the rejected s1, at 3 also the unlabeled s2.
    store.set_label("alice", "t", 0, "accept")
    for k in range(4):
        store.set_label("alice", "t", k, "accept", alternative_id=k + 1)
    store.set_label("alice", "t", 1, "reject")
    store.set_label("alice", "t", 3, "reject")
    video = {"video_path": "/clips/clip.mp4", "video_sha256": SHA}
    assert store.export_records("step-dpo") == [
        {
            "dataset": "reasoning",
            "prompt": "What does the man do?\nChoose from: A. cooking B. running",
            "initial_reason_steps": "s0<end_of_step>\n",
            "chosen": "s1 again<end_of_step>\n",
            "rejected": "s1<end_of_step>\n",
            "full_chosen": None,  # an alternative's continuation is not known
            "full_rejected": "s1<end_of_step>\ns2<end_of_step>\ns3",
            "answer": "B",
            **video,
            **ALICE_ALONE,
        }
    ]
    assert len(store.export_records("pdpo")) == 2  # pdpo keeps the pair at step 3


def test_step_dpo_prompt_takes_step_dpos_template_once(store, make_trace):
    """Step-DPO's train.py formats ``template.format(instruction=prompt) + initial_reason_steps``
    (its qwen2-boxed template: one system turn, the user turn, the assistant tag)."""
    template = (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n{instruction}\nPlease reason step by step, and put your final answer "
        "within \\boxed{{}}.<|im_end|>\n<|im_start|>assistant\n"
    )
    store.add_trace(make_trace("t", ["s0", "s1"], alternatives=[{"step_index": 1, "text": "s1b"}]))
    store.set_label("alice", "t", 0, "accept")
    store.set_label("alice", "t", 1, "reject")
    store.set_label("alice", "t", 1, "accept", alternative_id=1)
    [record] = store.export_records("step-dpo")
    text = template.format(instruction=record["prompt"]) + record["initial_reason_steps"]
    assert (text.count("<|im_start|>system"), text.count("<|im_start|>assistant")) == (1, 1)
    assert text.endswith("<|im_start|>assistant\ns0<end_of_step>\n")


def test_trl_dpo_writes_step_pairs_that_end_the_answer(store, make_trace):
    store.add_trace(_four_step_trace(make_trace))
    for k in range(4):
        store.set_label("alice", "t", k, "reject")
        store.set_label("alice", "t", k, "accept", alternative_id=k + 1)
    # Four step pairs; only the one at the last step ends an answer, as TRL's appended EOS says.
    assert len(store.export_records("pdpo")) == 4
    assert store.export_records("trl-dpo") == [
        {
            "prompt": "PROMPT\ns0<end_of_step>\ns1<end_of_step>\ns2<end_of_step>\n",
            "chosen": "s3 again",
            "rejected": "s3",
            "video_path": "/clips/clip.mp4",
            "video_sha256": SHA,
            **ALICE_ALONE,
        }
    ]


def test_video_path_is_relative_to_the_root_the_export_names(store, make_trace, tmp_path):
    media = tmp_path / "media"
    inside = make_trace("in", ["a"])
    inside["clip"] = {**inside["clip"], "path": str(media / "ab" / "clip.mp4")}
    outside = make_trace("out", ["b"], clip_sha="d" * 64)  # /clips/clip.mp4, not under the root
    store.add_traces([inside, outside])
    for trace_id in ("in", "out"):
        store.set_label("alice", trace_id, 0, "accept")
    result = store.export("trl-stepwise", tmp_path / "sw.jsonl", video_root=media)
    assert result["video_root"] == str(media.resolve())
    records = [json.loads(line) for line in (tmp_path / "sw.jsonl").read_text().splitlines()]
    assert [r["video_path"] for r in records] == ["ab/clip.mp4", "/clips/clip.mp4"]
    # Default root: the database's folder.
    assert store.export("trl-stepwise", tmp_path / "sw2.jsonl")["video_root"] == str(tmp_path.resolve())
    records = [json.loads(line) for line in (tmp_path / "sw2.jsonl").read_text().splitlines()]
    assert records[0]["video_path"] == "media/ab/clip.mp4"
