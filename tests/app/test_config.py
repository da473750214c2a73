"""Flags, their environment variables and the defaults, read into one frozen AppConfig."""

from __future__ import annotations

import dataclasses

import pytest

from ui.config import AppConfig, ConfigError, parse_config, read_auth_file


def test_defaults_without_flags_or_variables():
    assert parse_config([], {}) == AppConfig()


def test_variables_set_what_flags_do_and_flags_win():
    env = {
        "STUDIO_CHECKPOINT": "/ckpt",
        "STUDIO_QUANTIZATION": "8bit",
        "STUDIO_DEVICE": "cpu",
        "STUDIO_DB": "/data/a.db",
        "STUDIO_MAX_UPLOAD_MB": "20",
        "STUDIO_MAX_DURATION_S": "30",
        "STUDIO_HOST": "0.0.0.0",
        "STUDIO_PORT": "8000",
        "STUDIO_MEDIA_PATHS": "/clips:/more",
        "STUDIO_NO_PRELOAD": "1",
        "STUDIO_TORCH_THREADS": "3",
    }
    config = parse_config([], env)
    assert (config.checkpoint, config.quantization, config.device, config.db) == (
        "/ckpt",
        "8bit",
        "cpu",
        "/data/a.db",
    )
    assert (config.max_upload_mb, config.max_duration_s, config.host, config.port) == (
        20.0,
        30.0,
        "0.0.0.0",
        8000,
    )
    assert config.media_paths == ("/clips", "/more") and config.preload is False
    assert config.torch_threads == 3
    flags = parse_config(
        ["--db", "b.db", "--port", "9000", "--quantization", "4bit", "--media-path", "/x"], env
    )
    assert (flags.db, flags.port, flags.quantization) == ("b.db", 9000, "4bit")
    assert flags.media_paths == ("/clips", "/more", "/x")


def test_spaces_variables():
    config = parse_config(
        [], {"GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": "7861", "OAUTH_CLIENT_ID": "x"}
    )
    assert (config.host, config.port, config.oauth, config.auth_on) == ("0.0.0.0", 7861, True, True)
    assert parse_config([], {"ANNOTATION_DB": "/data/s.db"}).db == "/data/s.db"


def test_label_only_and_media_root():
    config = parse_config(["--label-only", "--db", "/data/x/a.db"], {})
    assert config.label_only and str(config.media_root) == "/data/x/clips"
    assert parse_config([], {"STUDIO_LABEL_ONLY": "true"}).label_only
    with pytest.raises(ConfigError, match="--label-only loads no model"):
        parse_config(["--label-only", "--checkpoint", "x"], {})


def test_auth_file(tmp_path):
    path = tmp_path / "users"
    path.write_text("# who may label\nalice:pa:ss\n\n bob : x\n")
    assert read_auth_file(str(path)) == (("alice", "pa:ss"), ("bob", " x"))
    config = parse_config(["--auth-file", str(path), "--oauth"], {})
    assert config.auth_pairs == (("alice", "pa:ss"), ("bob", " x")) and config.auth_on
    assert config.oauth is False  # a password file wins over OAuth
    assert "pa:ss" not in repr(config)
    path.write_text("carol:secret:reviewer\ndan:pw:admin\n")
    config = parse_config(["--auth-file", str(path)], {})
    assert config.auth_pairs == (("carol", "secret"), ("dan", "pw"))
    assert config.auth_roles == (("carol", "reviewer"), ("dan", "admin"))
    path.write_text("alice\n")
    with pytest.raises(ConfigError, match="line 1 is not name:password"):
        read_auth_file(str(path))
    path.write_text("# nobody\n")
    with pytest.raises(ConfigError, match="holds no name:password line"):
        read_auth_file(str(path))
    with pytest.raises(ConfigError, match="cannot read the auth file"):
        read_auth_file(str(tmp_path / "missing"))


def test_bad_limits():
    with pytest.raises(ConfigError, match="must be positive"):
        parse_config(["--max-upload-mb", "0"], {})


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        AppConfig().port = 1  # type: ignore[misc]


def test_app_exits_2_with_one_line_on_bad_configuration(tmp_path, capsys):
    import app

    assert app.main(["--auth-file", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.startswith("error: cannot read the auth file")


def test_cpu_threads_leave_a_core_for_the_page(monkeypatch):
    import torch

    from ui.services import set_cpu_threads

    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    assert set_cpu_threads(AppConfig(device="cpu")) == 3
    assert set_cpu_threads(AppConfig(device="cpu", torch_threads=2)) == 2
    assert set_cpu_threads(AppConfig(device="cpu", torch_threads=0)) is None
    assert set_cpu_threads(AppConfig(device="cuda")) is None
    assert calls == [3, 2]


def test_a_loaded_model_is_kept_out_of_the_garbage_collectors_walks():
    import gc

    from ui.services import ModelHolder

    class Loaded:
        def describe(self):
            return {}

    gc.unfreeze()
    holder = ModelHolder(AppConfig(), loader=Loaded)
    assert gc.get_freeze_count() == 0
    assert isinstance(holder.get(), Loaded) and holder.state == "ready"
    assert gc.get_freeze_count() > 0
    gc.unfreeze()


def test_db_sync_reaches_sqlite(tmp_path):
    """--db-sync full (or STUDIO_DB_SYNC): every commit is synced, labels survive a power cut."""
    from ui.services import Studio

    assert parse_config([], {}).db_sync == "NORMAL"
    assert parse_config([], {"STUDIO_DB_SYNC": "full"}).db_sync == "FULL"
    with pytest.raises(ConfigError, match="normal or full"):
        parse_config([], {"STUDIO_DB_SYNC": "fast"})
    config = parse_config(["--db", str(tmp_path / "a.db"), "--db-sync", "full", "--label-only"], {})
    studio = Studio(config)
    try:
        assert studio.store.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        studio.close()


def test_auth_file_roles_are_stored_at_start_and_admins_may_back_up(tmp_path):
    """``name:password:role`` lines give the store its roles when the app starts; a role-admin
    may download the backup while others signed in may not."""
    from ui.services import Studio
    from ui.storage import backup_refusal

    users = tmp_path / "users"
    users.write_text("alice:pw\ncarol:pw:reviewer\ndan:pw:admin\n")
    config = parse_config(["--auth-file", str(users), "--label-only", "--db", str(tmp_path / "a.db")], {})
    studio = Studio(config)
    try:
        assert studio.store.roles() == {"alice": "annotator", "carol": "reviewer", "dan": "admin"}
    finally:
        studio.close()
    assert backup_refusal(config, "dan") is None
    assert backup_refusal(config, "carol") == (
        "only dan may download the database backup (--admin, or role admin in --auth-file)"
    )
