"""A separate writer process for the concurrency and crash tests (not a test module).

    python tests/store/writer.py DB MODE ANNOTATOR N

MODE ``labels``: N rounds of labeling every step of trace "t", one label per call; prints
``ack ROUND STEP COMMENT`` after each call returns. MODE ``batches``: batches of labels on every
step of trace "t" in one ``set_labels`` call, forever when N is 0; prints ``ack BATCH`` after
each. MODE ``imports``: imports files of 200 new traces, forever when N is 0; prints ``ack
FILE``. MODE ``open``: opens (and migrates) the database, prints ``ack``.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from annotation_db import VERDICTS, Store  # noqa: E402

IMPORT_BATCH = 200


def main() -> None:
    db, mode, annotator, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    with Store.open(db) as store:
        if mode == "open":
            print("ack", flush=True)
            return
        rounds = itertools.count() if n == 0 else range(n)
        if mode == "imports":
            for i in rounds:
                path = Path(db).with_name(f"import-{annotator}-{i}.jsonl")
                lines = []
                for j in range(IMPORT_BATCH):
                    trace = {
                        "schema_version": 1,
                        "id": f"{annotator}-{i}-{j}",
                        "question": "q",
                        "clip": {"sha256": "ab" * 32},
                        "steps": [{"index": 0, "text": f"s{j}"}],
                    }
                    lines.append(json.dumps(trace))
                path.write_text("\n".join(lines))
                store.import_traces(path)
                print(f"ack {i}", flush=True)
            return
        n_steps = len(store.get_trace("t").trace.steps)
        for i in rounds:
            if mode == "labels":
                for k in range(n_steps):
                    comment = f"{annotator}-{i}-{k}"
                    store.set_label(
                        annotator, "t", k, VERDICTS[(i + k) % 3], comment=comment, time_spent_s=0.5
                    )
                    print(f"ack {i} {k} {comment}", flush=True)
            elif mode == "batches":
                items = [
                    {
                        "trace_id": "t",
                        "step_index": k,
                        "verdict": VERDICTS[(i + k) % 2],
                        "comment": f"batch-{i}",
                    }
                    for k in range(n_steps)
                ]
                store.set_labels(annotator, items)
                print(f"ack {i}", flush=True)


if __name__ == "__main__":
    main()
