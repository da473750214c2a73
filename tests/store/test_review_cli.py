"""``python -m annotation_db`` role, tag-kinds and stats under a resolution rule."""

from __future__ import annotations

import json

import pytest

from annotation_db import Store
from annotation_db.cli import main
from annotation_db.tracejson import file_sha256


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_role_command(tmp_path, capsys):
    db = str(tmp_path / "a.db")
    assert _run(capsys, "--db", db, "role", "rita", "reviewer") == (0, "rita is now reviewer\n", "")
    assert _run(capsys, "--db", db, "role", "rita", "reviewer") == (0, "rita is already reviewer\n", "")
    assert _run(capsys, "--db", db, "role", "alice") == (0, "alice  annotator\n", "")
    assert _run(capsys, "--db", db, "role") == (0, "rita  reviewer\n", "")


def test_tag_kinds_and_stats_with_a_rule(tmp_path, capsys, make_trace, write_jsonl):
    db = str(tmp_path / "a.db")
    clip = tmp_path / "c.mp4"
    clip.write_bytes(b"clip bytes")
    trace = make_trace("t1", ["a", "b"], scores=[0.1, 0.7], clip_sha=file_sha256(clip))
    trace["steps"][1]["scores"] = {"mute": 0.9}
    _run(capsys, "--db", db, "import", str(write_jsonl(tmp_path / "t.jsonl", [trace])))
    (tmp_path / "manifest.jsonl").write_text('{"file": "c.mp4", "kind": "StandUp"}\n', encoding="utf-8")
    assert _run(capsys, "--db", db, "tag-kinds", str(tmp_path / "manifest.jsonl")) == (
        0,
        "tagged 1 clips; 0 manifest clips are not stored\n",
        "",
    )
    with Store.open(db) as store:
        store.set_label("alice", "t1", 0, "accept", time_spent_s=4.0)
        store.set_label("alice", "t1", 1, "reject", error_type="audio_misperception", time_spent_s=6.0)
        store.set_label("bob", "t1", 1, "reject", error_type="audio_misperception")
    code, out, _ = _run(capsys, "--db", db, "stats", "--json", "--min-labels", "2")
    stats = json.loads(out)
    assert code == 0
    assert stats["resolution"]["rule"] == {"method": "majority", "min_labels": 2, "min_agreement": 0.0}
    assert stats["resolution"]["by_status"]["too_few_labels"] == 1  # step 0: alice alone
    assert stats["error_analysis"]["by_clip_kind"][0] | {"ci": None} == {
        "group": "StandUp",
        "n": 1,
        "k": 1,
        "rate": 1.0,
        "ci": None,
        "error_types": {"audio_misperception": 1},
    }
    code, out, _ = _run(capsys, "--db", db, "stats")
    text = out.splitlines()
    assert code == 0
    assert (
        "resolution (majority, at least 1 votes and agreement 0.00): 2 items, accept 1, reject 1; adjudicated 0, "
        "sent back 0, aggregated 2, unlabeled 0, too few labels 0, tie 0, low agreement 0"
    ) in text
    assert "  clip kind StandUp: rejected 50.0% [9.5, 90.5] (1/2)" in text
    assert "  AUROC of score for audio_misperception: 1.000 [1.000, 1.000] (1 rejected, 1 accepted)" in text
    assert "  model base: accuracy 100.0% [20.7, 100.0] (1/1), reject rate 50.0% [9.5, 90.5] (1/2)" in text
    with pytest.raises(SystemExit) as exit_:  # argparse's usage error
        main(["--db", db, "stats", "--min-agreement", "2"])
    assert exit_.value.code == 2 and "2 is not a fraction between 0 and 1" in capsys.readouterr().err
