"""The app's configuration: command-line flags, each with an environment-variable equivalent
(Hugging Face Spaces configure an app through variables), read once into a frozen AppConfig.

Precedence: a flag given on the command line > its environment variable > the default.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from annotation_db.errors import AuthFileError
from annotation_db.roles import AuthEntry
from annotation_db.roles import read_auth_file as read_auth_file_entries
from inference.errors import UserError
from inference.options import ModelOptions

REPO = Path(__file__).resolve().parent.parent
# Hugging Face Spaces mount persistent storage here (when the owner enables it); everything else
# on a Space, the app folder included, is wiped at every restart.
SPACE_PERSISTENT_DIR = "/data"
LABELS_LOST_WARNING = "labels will be lost at restart: enable persistent storage or set --db"


class ConfigError(UserError):
    """A flag or environment variable has a value the app cannot use."""


@dataclass(frozen=True)
class AppConfig:
    # --- model (the same flags and variables as ``python -m inference run``) -----------------
    checkpoint: str | None = None  # None: released model on CUDA, tiny demo model elsewhere
    revision: str | None = None
    quantization: str = "auto"  # auto = 4-bit NF4 on CUDA, none on CPU
    device: str = "auto"
    compute_dtype: str = "auto"  # auto: bfloat16 on GPUs that have it, float16 below (T4), float32 on CPU
    adapter: str | None = None
    vision_source: str | None = None  # component config folders (inference.options.MODEL_FLAGS)
    whisper_source: str | None = None
    qformer_source: str | None = None
    label_only: bool = False  # serve stored traces for labeling, load no model at all
    preload: bool = True  # load the model in a background thread at startup, not on first click
    # CPU threads for the model when it runs on the CPU: -1 = all cores but one (the page keeps a
    # core, so labels do not wait while an analysis computes), 0 = torch's default, n = n.
    torch_threads: int = -1
    # --- data ----------------------------------------------------------------------------------
    db: str = "data/annotations.db"  # /data/ is git-ignored; on Spaces point it at /data (persistent)
    media_dir: str | None = None  # analysed clips are kept here by content hash; None: <db dir>/clips
    media_paths: tuple[str, ...] = ()  # more folders whose clips (of imported traces) may be played
    # SQLite's synchronous mode: NORMAL keeps every acknowledged label through a crash of the app;
    # FULL also through a power cut or an OS crash, at ~4 ms more per label (annotation_db.StoreConfig).
    db_sync: str = "NORMAL"
    # --- users ---------------------------------------------------------------------------------
    auth_file: str | None = None  # "name:password" per line; every label then belongs to the login
    oauth: bool = False  # "Sign in with Hugging Face" (Spaces with hf_oauth: true in README)
    # --- input limits --------------------------------------------------------------------------
    max_upload_mb: float = 500.0  # inference.media.MediaLimits' default: a 10-minute 1080p phone clip
    max_duration_s: float = 600.0  # 10 minutes: past this the 60 frames are > 10 s apart
    # --- server --------------------------------------------------------------------------------
    host: str = "127.0.0.1"  # local only by default; Spaces and containers pass 0.0.0.0
    port: int = 7860  # Gradio's usual port (what Spaces expect)
    label_concurrency: int = 32  # labeling events at once; GPU events are always one at a time
    auth_pairs: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # read from auth_file
    # --- where labels live on a Space (``space_storage``) -------------------------------------
    # (name, role) from the auth file's optional third field; stored at start (Store.sync_roles)
    auth_roles: tuple[tuple[str, str], ...] = ()
    admins: tuple[str, ...] = ()  # who may download a database backup when login is on; () = anyone signed in
    storage_warning: str | None = None  # set on a Space whose labels would not survive a restart

    @property
    def model_options(self) -> ModelOptions:
        """The model flags as the type every command shares (``inference.options``)."""
        return ModelOptions(**{f.name: getattr(self, f.name) for f in fields(ModelOptions)})

    @property
    def media_root(self) -> Path:
        return Path(self.media_dir) if self.media_dir else Path(self.db).parent / "clips"

    @property
    def auth_on(self) -> bool:
        return bool(self.auth_pairs) or self.oauth


@dataclass(frozen=True)
class SpaceStorage:
    """Where a Space keeps the database, and whether it survives a restart."""

    db: str
    persistent: bool
    warning: str | None


def on_space(environ: Mapping[str, str]) -> bool:
    """Hugging Face sets SPACE_ID (owner/name) and SYSTEM=spaces in every Space's container."""
    return bool(environ.get("SPACE_ID")) or environ.get("SYSTEM") == "spaces"


def space_storage(db: str | None, environ: Mapping[str, str]) -> SpaceStorage:
    """The database path: ``db`` when given (flag or variable), else on a Space with persistent
    storage mounted ``/data/annotations.db`` (``STUDIO_PERSISTENT_DIR`` stands in for /data), else
    the default in the app folder. On a Space whose database is outside mounted persistent
    storage, a warning says the labels will be lost at restart. Kept clips follow the database
    (``AppConfig.media_root``)."""
    persistent_dir = Path(environ.get("STUDIO_PERSISTENT_DIR") or SPACE_PERSISTENT_DIR)
    mounted = persistent_dir.is_dir() and os.access(persistent_dir, os.W_OK)
    if not on_space(environ):
        return SpaceStorage(db or AppConfig.db, persistent=True, warning=None)
    if db is None:
        db = str(persistent_dir / "annotations.db") if mounted else AppConfig.db
    inside = mounted and Path(db).resolve().is_relative_to(persistent_dir.resolve())
    return SpaceStorage(db, persistent=inside, warning=None if inside else LABELS_LOST_WARNING)


def _flag_bool(value: str | None) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _model_flags(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    """The model flags every command shares, and the app's own model switches."""
    model = parser.add_argument_group("model")
    env = environ.get
    ModelOptions.add_arguments(model, environ)  # the same flags and variables as every command
    model.add_argument(
        "--label-only",
        action="store_true",
        default=_flag_bool(env("STUDIO_LABEL_ONLY")),
        help="no model: label stored traces only (env STUDIO_LABEL_ONLY=1)",
    )
    model.add_argument(
        "--no-preload",
        dest="preload",
        action="store_false",
        default=not _flag_bool(env("STUDIO_NO_PRELOAD")),
        help="load the model on the first analysis instead of at startup (env STUDIO_NO_PRELOAD=1)",
    )
    model.add_argument(
        "--torch-threads",
        type=int,
        default=int(env("STUDIO_TORCH_THREADS", AppConfig.torch_threads)),
        help="CPU threads for a model on the CPU: -1 = all cores but one (default), 0 = torch's "
        "default (env STUDIO_TORCH_THREADS)",
    )


def _data_flags(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    """Where labels and clips are kept."""
    data = parser.add_argument_group("data")
    env = environ.get
    data.add_argument(
        "--db",
        default=env("STUDIO_DB") or env("ANNOTATION_DB"),
        help=f"annotation database (env STUDIO_DB or ANNOTATION_DB; default {AppConfig.db}, on a Space "
        f"with persistent storage {SPACE_PERSISTENT_DIR}/annotations.db)",
    )
    data.add_argument(
        "--db-sync",
        type=str.upper,
        choices=["NORMAL", "FULL"],
        default=(env("STUDIO_DB_SYNC") or AppConfig.db_sync).upper(),
        help="normal: labels survive a crash of the app; full: also a power cut, slower writes "
        "(env STUDIO_DB_SYNC; default normal)",
    )
    data.add_argument(
        "--media-dir",
        default=env("STUDIO_MEDIA_DIR"),
        help="where analysed clips are kept (env STUDIO_MEDIA_DIR; default: clips/ beside the database)",
    )
    data.add_argument(
        "--media-path",
        action="append",
        default=[p for p in (env("STUDIO_MEDIA_PATHS") or "").split(os.pathsep) if p],
        help="a folder whose clips may be played (imported traces); repeatable "
        "(env STUDIO_MEDIA_PATHS, separated by ':')",
    )


def _user_flags(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    """Login and who may download the database."""
    users = parser.add_argument_group("users")
    env = environ.get
    users.add_argument(
        "--auth-file",
        default=env("STUDIO_AUTH_FILE"),
        help="file with one name:password per line; turns login on (env STUDIO_AUTH_FILE)",
    )
    users.add_argument(
        "--admin",
        action="append",
        default=[a for a in (env("STUDIO_ADMINS") or "").split(",") if a.strip()],
        help="a login allowed to download the database backup; repeatable (env STUDIO_ADMINS, "
        "comma-separated; default: anyone signed in, when login is on)",
    )
    users.add_argument(
        "--oauth",
        action="store_true",
        # A Space with ``hf_oauth: true`` gets OAUTH_CLIENT_ID: sign in with Hugging Face there.
        default=_flag_bool(env("STUDIO_OAUTH")) or bool(env("OAUTH_CLIENT_ID")),
        help="sign in with Hugging Face (on by itself on a Space with hf_oauth: true; env STUDIO_OAUTH=1)",
    )


def _limit_flags(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    """What an upload may be."""
    limits = parser.add_argument_group("limits")
    env = environ.get
    limits.add_argument(
        "--max-upload-mb",
        type=float,
        default=float(env("STUDIO_MAX_UPLOAD_MB", AppConfig.max_upload_mb)),
        help=f"largest clip accepted, MB (env STUDIO_MAX_UPLOAD_MB; default {AppConfig.max_upload_mb:g})",
    )
    limits.add_argument(
        "--max-duration-s",
        type=float,
        default=float(env("STUDIO_MAX_DURATION_S", AppConfig.max_duration_s)),
        help=f"longest clip accepted, seconds (env STUDIO_MAX_DURATION_S; default {AppConfig.max_duration_s:g})",
    )


def _server_flags(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    """Where the page is served."""
    server = parser.add_argument_group("server")
    env = environ.get
    server.add_argument(
        "--host",
        default=env("STUDIO_HOST") or env("GRADIO_SERVER_NAME") or AppConfig.host,
        help="address to listen on (env STUDIO_HOST or GRADIO_SERVER_NAME; default 127.0.0.1)",
    )
    server.add_argument(
        "--port",
        type=int,
        default=int(env("STUDIO_PORT") or env("GRADIO_SERVER_PORT") or AppConfig.port),
        help="port (env STUDIO_PORT or GRADIO_SERVER_PORT; default 7860)",
    )


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python app.py",
        description="video-SALMONN-o1 Studio: analyse clips step by step, label the steps, export preferences.",
    )
    for add_flags in (_model_flags, _data_flags, _user_flags, _limit_flags, _server_flags):
        add_flags(parser, environ)
    return parser


def read_auth_entries(path: str) -> tuple[AuthEntry, ...]:
    """``name:password`` or ``name:password:role`` per line (``annotation_db.roles``; blank lines
    and ``#`` comments skipped); a bad file is a ConfigError with its one-line reason."""
    try:
        return read_auth_file_entries(path)
    except AuthFileError as exc:
        raise ConfigError(str(exc)) from exc


def read_auth_file(path: str) -> tuple[tuple[str, str], ...]:
    """The (name, password) pairs of the auth file: what Gradio's login checks."""
    return tuple((e.name, e.password) for e in read_auth_entries(path))


def parse_config(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> AppConfig:
    """Flags (``argv``, default sys.argv[1:]) over variables (``environ``, default os.environ)."""
    environ = os.environ if environ is None else environ
    args = build_parser(environ).parse_args(argv)
    if args.max_upload_mb <= 0 or args.max_duration_s <= 0:
        raise ConfigError("--max-upload-mb and --max-duration-s must be positive")
    if args.db_sync not in ("NORMAL", "FULL"):
        raise ConfigError(f"--db-sync / STUDIO_DB_SYNC must be normal or full, not {args.db_sync.lower()!r}")
    if args.label_only and args.checkpoint:
        raise ConfigError("--label-only loads no model; drop --checkpoint or --label-only")
    entries = read_auth_entries(args.auth_file) if args.auth_file else ()
    auth_pairs = tuple((e.name, e.password) for e in entries)
    storage = space_storage(args.db, environ)
    return AppConfig(
        **asdict(ModelOptions.from_args(args)),
        label_only=args.label_only,
        preload=args.preload,
        torch_threads=args.torch_threads,
        db=storage.db,
        media_dir=args.media_dir,
        media_paths=tuple(args.media_path),
        db_sync=args.db_sync,
        auth_file=args.auth_file,
        oauth=args.oauth and not auth_pairs,  # a password file wins over OAuth
        max_upload_mb=args.max_upload_mb,
        max_duration_s=args.max_duration_s,
        host=args.host,
        port=args.port,
        auth_pairs=auth_pairs,
        auth_roles=tuple((e.name, e.role) for e in entries),
        admins=tuple(a.strip() for a in args.admin if a.strip()),
        storage_warning=storage.warning,
    )
