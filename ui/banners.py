"""The banners above the page (Gradio-free HTML): where labels are kept, a read-only database,
and which model runs (the tiny demo model's output is meaningless)."""

from __future__ import annotations

from ui import render
from ui.config import AppConfig
from ui.services import Studio


def banner_html(config: AppConfig, studio: Studio) -> str:
    from ui.storage import storage_banner

    return storage_banner(config) + read_only_banner(studio) + model_banner(config, studio)


def read_only_banner(studio: Studio) -> str:
    """Said before anyone labels: a database that cannot be written refuses every label."""
    if not studio.store.read_only:
        return ""
    return (
        f'<div class="banner read-only"><b>Read-only database:</b> {render.esc(studio.store.path)} cannot be '
        f"written ({render.esc(studio.store.read_only)}), so labels are not saved. Browse, review and export "
        "work; to label, make the file and its folder writable and restart the app.</div>"
    )


def model_banner(config: AppConfig, studio: Studio) -> str:
    if config.label_only:
        return (
            '<div class="banner label-only"><b>Label-only mode:</b> no model is loaded. Open stored traces '
            "in the Queue tab and label them.</div>"
        )
    if studio.models is not None and studio.models.expected_tiny():
        return (
            '<div class="banner tiny"><b>Demo model:</b> no GPU here, so a tiny model of the same architecture '
            "runs. <b>Its reasoning, answers and scores are meaningless</b>; streaming, scoring, labeling and "
            "export work as with the real model.</div>"
        )
    from inference.model.config import RELEASED_CHECKPOINT

    name = render.esc(config.checkpoint or RELEASED_CHECKPOINT)
    return f'<div class="banner real">Model: <b>{name}</b> ({render.esc(config.quantization)} quantization).</div>'
