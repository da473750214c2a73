"""The Trace: one definition, standard library only, shared by every layer.

``inference`` produces Traces, ``annotation_db`` stores them, ``ui`` shows them and ``training``
reads the exports made from them. Nothing here imports torch, gradio, sqlite or any project
package, so each layer can import it without pulling in another. ``studio_trace.chatml`` holds
the prompt texts a Trace's ``prompt`` is made of (tests/test_layers.py checks the imports).
"""

from studio_trace.chatml import (
    AV_PLACEHOLDER_TEXT,
    DEFAULT_SYSTEM,
    ENDOFTEXT,
    FOLLOWUP_QUESTION,
    FOLLOWUP_TEXT,
    IM_END,
    IM_START,
    PROMPT_KINDS,
    PROMPTS,
    STEP_DELIMITER,
    STEP_SUFFIX,
    SYNTHDEC_QUESTION,
    PromptTemplate,
    followup_prompt_text,
    prompt_text,
    user_text,
)
from studio_trace.trace import (
    ALTERNATIVE_SOURCES,
    SCHEMA_VERSION,
    SOURCES,
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
    "ALTERNATIVE_SOURCES",
    "AV_PLACEHOLDER_TEXT",
    "DEFAULT_SYSTEM",
    "ENDOFTEXT",
    "FOLLOWUP_QUESTION",
    "FOLLOWUP_TEXT",
    "IM_END",
    "IM_START",
    "PROMPTS",
    "PROMPT_KINDS",
    "SCHEMA_VERSION",
    "SOURCES",
    "STEP_DELIMITER",
    "STEP_SUFFIX",
    "SYNTHDEC_QUESTION",
    "Alternative",
    "Answer",
    "ClipInfo",
    "PromptTemplate",
    "Step",
    "Trace",
    "TraceFormatError",
    "extract_choice",
    "followup_prompt_text",
    "prompt_text",
    "user_text",
    "validate_trace_dict",
]
