"""The Trace: one definition, standard library only, shared by every layer.

``inference`` produces Traces, ``annotation_db`` stores them, ``ui`` shows them and ``training``
reads the exports made from them. Nothing here imports torch, gradio, sqlite or any project
package, so each layer can import it without pulling in another.
"""

from studio_trace.trace import (
    PROMPT_KINDS,
    SCHEMA_VERSION,
    SOURCES,
    STEP_DELIMITER,
    Alternative,
    Answer,
    ClipInfo,
    Step,
    Trace,
    TraceFormatError,
    extract_choice,
    validate_trace_dict,
)

__all__ = [
    "PROMPT_KINDS",
    "SCHEMA_VERSION",
    "SOURCES",
    "STEP_DELIMITER",
    "Alternative",
    "Answer",
    "ClipInfo",
    "Step",
    "Trace",
    "TraceFormatError",
    "extract_choice",
    "validate_trace_dict",
]
