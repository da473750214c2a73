"""Access (issue 8): with login on, nobody unauthenticated can label, export or download anything;
an annotator cannot act as another through the API; downloads are the clips and nothing beside
them; uploads over the limit are refused; export files cannot be named out of their folder.

The app runs as ``python app.py`` in its own process; requests are made as a browser or a script
would: raw HTTP (httpx) for what has no login, gradio_client with a login for the rest."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import httpx
import pytest
from gradio_client.exceptions import AppError

from tests.app.conftest import make_trace

pytestmark = pytest.mark.slow

USERS = {"alice": "secret", "bob": "hunter2"}


@pytest.fixture
def site(tmp_path, app_process):
    """A label-only app with login; its database and password file lie in one folder together
    with the clip of a stored trace (as when clips are imported from where the data lives)."""
    from annotation_db import Store

    data = tmp_path / "data"
    data.mkdir()
    (data / "users.txt").write_text("".join(f"{name}:{password}\n" for name, password in USERS.items()))
    clip = data / "clip.mp4"
    clip.write_bytes(b"\0" * 1024)  # never decoded here: served as a file only
    db = data / "annotations.db"
    store = Store.open(db)
    store.add_trace(make_trace("acc-1", ["The ball rolls.", "It stops."], [0.4, 0.1], clip_path=str(clip)))
    store.close()
    app = app_process("--label-only", "--auth-file", str(data / "users.txt"), "--max-upload-mb", "1", db=db)
    return app, data


def labels(db: Path) -> list[tuple[str, int, str]]:
    from annotation_db import Store

    store = Store.open(db)
    try:
        return sorted(
            (x["annotator"], x["step_index"], x["verdict"]) for x in store.labels_for_trace("acc-1")
        )
    finally:
        store.close()


def signed_in(app, name: str) -> httpx.Client:
    http = httpx.Client(base_url=app.url, timeout=30)
    assert http.post("login", data={"username": name, "password": USERS[name]}).status_code == 200
    return http


def fn_index(config: dict, api_name: str) -> int:
    return next(d["id"] for d in config["dependencies"] if d.get("api_name") == api_name)


def test_nothing_without_login(site):
    app, data = site
    anonymous = httpx.Client(base_url=app.url, timeout=30)
    # the page is the login form, and nothing of the app's configuration or data
    page = anonymous.get("").text
    assert "acc-1" not in page and "The ball rolls." not in page
    for path in (
        "config",
        "gradio_api/info",
        f"gradio_api/file={data / 'clip.mp4'}",
        "gradio_api/queue/data",
    ):
        assert anonymous.get(path).status_code == 401, path
    # labeling and exporting, by the queue (what the page uses) and by the REST API
    accept = {"data": ["alice", "acc-1", 0, "", "", True, None], "fn_index": 5, "session_hash": "x1"}
    assert anonymous.post("gradio_api/queue/join", json=accept).status_code == 401
    for api_name, data_ in [
        ("accept", ["alice", "acc-1", 0, "", "", True]),
        ("export", ["pdpo", "jsonl", 0, "", ""]),
    ]:
        assert anonymous.post(f"gradio_api/call/{api_name}", json={"data": data_}).status_code == 401
    upload = anonymous.post("gradio_api/upload", files={"files": ("c.mp4", b"\0" * 10)})
    assert upload.status_code == 401
    assert anonymous.post("login", data={"username": "alice", "password": "wrong"}).status_code == 400
    with pytest.raises(Exception):  # noqa: B017 (gradio_client has no typed error for a login page)
        app.client()
    assert labels(data / "annotations.db") == []
    assert app.alive()


def test_labels_belong_to_the_login_whatever_name_is_sent(site):
    app, data = site
    alice = app.client(auth=("alice", USERS["alice"]))
    bob = app.client(auth=("bob", USERS["bob"]))
    alice.predict("alice", "acc-1", 0, "hallucination", "alice's reason", True, api_name="/reject")
    # bob sends alice's name (the page's name box, or a script) on every call that writes
    bob.predict("alice", "acc-1", 0, "", "", True, api_name="/accept")
    bob.predict("alice", "acc-1", 1, "", "", True, api_name="/accept")
    # undo walks back bob's own changes only: step 2, then (nothing left there) step 1, then none
    bob.predict("alice", "acc-1", 1, True, api_name="/undo")
    bob.predict("alice", "acc-1", 1, True, api_name="/undo")
    with pytest.raises(AppError, match="no earlier label"):
        bob.predict("alice", "acc-1", 0, True, api_name="/undo")
    assert labels(data / "annotations.db") == [("alice", 0, "reject")]
    bob.predict("alice", "acc-1", 0, "", "", True, api_name="/accept")
    bob.predict("alice", "acc-1", 0, "Bob's rewrite.", api_name="/correct")
    assert labels(data / "annotations.db") == [("alice", 0, "reject"), ("bob", 0, "accept")]

    from annotation_db import Store

    store = Store.open(data / "annotations.db")
    try:
        (alice_label,) = store.labels_for_trace("acc-1", "alice")
        assert alice_label["comment"] == "alice's reason"
        stored = store.get_trace("acc-1")
        authors = zip(stored.trace.alternatives, stored.alternative_authors, strict=True)
        assert [who for alt, who in authors if alt.source == "human"] == ["bob"]
        assert store.preferences_for_trace("acc-1", "alice") == []
    finally:
        store.close()


def test_downloads_are_the_clips_and_nothing_beside_them(site):
    app, data = site
    http = signed_in(app, "alice")
    assert http.get(f"gradio_api/file={data / 'clip.mp4'}").status_code == 200
    for private in ("annotations.db", "annotations.db-wal", "annotations.db-shm", "users.txt"):
        assert http.get(f"gradio_api/file={data / private}").status_code == 403, private
    for elsewhere in ("/etc/passwd", str(Path(__file__).resolve())):
        assert http.get(f"gradio_api/file={elsewhere}").status_code == 403, elsewhere


def test_uploads_over_the_limit_are_refused(site):
    app, _ = site
    http = signed_in(app, "alice")
    small = http.post("gradio_api/upload", files={"files": ("small.mp4", b"\0" * 1000)})
    assert small.status_code == 200
    big = http.post("gradio_api/upload", files={"files": ("big.mp4", b"\0" * (1024 * 1024 + 1))})
    assert big.status_code == 413
    assert big.text.strip() == "File size exceeded maximum allowed size of 1048576 bytes."  # Gradio's line
    assert app.alive() and http.get("config").status_code == 200


def test_export_files_stay_in_their_folder(site):
    app, _ = site
    alice = app.client(auth=("alice", USERS["alice"]))
    for format_, suffix in [("../../../tmp/escape", "jsonl"), ("pdpo", "../../x"), ("/etc/passwd", "jsonl")]:
        with pytest.raises(AppError):
            alice.predict(format_, suffix, 0, "", "", api_name="/export")
    assert not Path("/tmp/escape-").exists() and not list(Path("/").glob("x*.jsonl"))
    # an annotator name with path characters is a filter, never part of the file name: it
    # matches no label, and an export with nothing to write writes no file at all
    with pytest.raises(AppError, match="no labelled steps match the pdpo export"):
        alice.predict("pdpo", "jsonl", 0, "../../evil", "", api_name="/export")
    assert not list(Path(tempfile.gettempdir()).glob("studio-export-*/*evil*"))
    alice.predict("alice", "acc-1", 0, "", "", True, api_name="/accept")
    path, message = alice.predict("trl-stepwise", "jsonl", 0, "alice", "", api_name="/export")
    exported = Path(path)
    assert re.fullmatch(r"trl-stepwise-\d{8}T\d{6}Z\.jsonl", exported.name), exported.name
    assert "1 trl-stepwise records" in message
    # the server wrote it in a fresh folder of its own under the temp dir (the client gets a copy)
    written = Path(message.rsplit(" ", 1)[-1])
    assert written.name == exported.name
    server_copies = list(Path(tempfile.gettempdir()).glob(f"studio-export-*/{exported.name}"))
    assert server_copies
