"""The annotation store: clips, traces, steps, alternatives, labels and their history in SQLite.

Importing this package opens nothing. ``Store.open(path)`` creates or migrates a database;
see ``annotation_db.store`` for the verbs, ``annotation_db.export`` for the training formats,
``annotation_db.stats`` for agreement and calibration, ``annotation_db.roles`` / ``review`` /
``resolution`` / ``analysis`` for roles, adjudication, the resolved label and error analysis,
and ``python -m annotation_db --help``.
It takes ``studio_trace.Trace`` objects or their JSON form and gives back ``StoredTrace``s (the
Trace and its row ids); it never imports ``inference``, torch or gradio (tests/test_layers.py).
"""

from annotation_db.errors import (
    AuthFileError,
    DatabaseOpenError,
    DatabaseTooNewError,
    ExportEmptyError,
    ExportFormatError,
    ExportWriteError,
    ImportFormatError,
    InvalidAlternativeError,
    InvalidAnnotatorError,
    InvalidLabelError,
    InvalidReviewError,
    InvalidRoleError,
    LabelOwnershipError,
    NothingToUndoError,
    PermissionDeniedError,
    StoreBusyError,
    StoreError,
    StoreFullError,
    StoreIOError,
    StoreReadOnlyError,
    TraceConflictError,
    UnknownAlternativeError,
    UnknownLabelError,
    UnknownStepError,
    UnknownTraceError,
)
from annotation_db.export import DEFAULT_MU, FORMATS, ExportOptions
from annotation_db.migrations import ERROR_TYPES, ROLES, VERDICTS
from annotation_db.resolution import ResolutionRule
from annotation_db.store import QUEUE_ORDERS, Store, StoreConfig, StoredTrace

__all__ = [
    "DEFAULT_MU",
    "ERROR_TYPES",
    "FORMATS",
    "QUEUE_ORDERS",
    "ROLES",
    "VERDICTS",
    "AuthFileError",
    "DatabaseOpenError",
    "DatabaseTooNewError",
    "ExportEmptyError",
    "ExportFormatError",
    "ExportOptions",
    "ExportWriteError",
    "ImportFormatError",
    "InvalidAlternativeError",
    "InvalidAnnotatorError",
    "InvalidLabelError",
    "InvalidReviewError",
    "InvalidRoleError",
    "LabelOwnershipError",
    "NothingToUndoError",
    "PermissionDeniedError",
    "ResolutionRule",
    "Store",
    "StoreBusyError",
    "StoreConfig",
    "StoredTrace",
    "StoreError",
    "StoreFullError",
    "StoreIOError",
    "StoreReadOnlyError",
    "TraceConflictError",
    "UnknownAlternativeError",
    "UnknownLabelError",
    "UnknownStepError",
    "UnknownTraceError",
]
