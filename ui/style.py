"""The page's CSS (given to ``launch(css=...)``): steps, scores, badges, banners, the progress bar."""

from __future__ import annotations

from ui import render

CSS = """
#title h1 { font-size: 1.45em; margin: 0; }
#title p { margin: 2px 0 4px; color: var(--body-text-color-subdued); }
.steps { display: flex; flex-direction: column; gap: 6px; }
#steps .steps { max-height: 52vh; overflow-y: auto; padding-right: 4px; }
#stream .steps { max-height: 46vh; overflow-y: auto; padding-right: 4px; }
.steps.empty, .alternatives.empty, .trace-card.empty { color: var(--body-text-color-subdued); padding: 8px; }
.step { border: 1px solid var(--border-color-primary); border-left: 5px solid #bdbdbd; border-radius: 6px;
        padding: 6px 10px; cursor: pointer; }
.stream .step { cursor: default; }
.step.current { outline: 2px solid var(--color-accent); background: var(--background-fill-secondary); }
.step.labeled-accept { border-left-color: #2e7d32; }
.step.labeled-reject { border-left-color: #c62828; }
.step.labeled-unsure { border-left-color: #f9a825; }
.step.pending { color: var(--body-text-color-subdued); cursor: default; }
.step-head { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; font-size: 0.85em; margin-bottom: 3px; }
.step-no { font-weight: 600; }
.step-text { white-space: pre-wrap; line-height: 1.5; }
.score, .score-extra { font-family: var(--font-mono); }
.score-bar { display: inline-block; width: 60px; height: 8px; background: #eceff1; border-radius: 4px;
             vertical-align: middle; overflow: hidden; }
.score-bar span { display: block; height: 100%; background: #6a1b9a; }
.badge { border-radius: 9px; padding: 0 7px; font-size: 0.85em; border: 1px solid var(--border-color-primary); }
.badge.top-t { background: #6a1b9a; color: white; border-color: #6a1b9a; }
.badge.verdict-accept { background: #e8f5e9; color: #1b5e20; }
.badge.verdict-reject { background: #ffebee; color: #b71c1c; }
.badge.verdict-unsure { background: #fff8e1; color: #8d6e00; }
.badge.unlabeled { color: var(--body-text-color-subdued); }
.badge.right { background: #e8f5e9; color: #1b5e20; }
.badge.wrong { background: #ffebee; color: #b71c1c; }
button.seek { border: 1px solid var(--border-color-primary); border-radius: 9px; padding: 0 7px;
              background: var(--background-fill-primary); cursor: pointer; font-size: 0.85em; }
.comment { font-size: 0.85em; color: var(--body-text-color-subdued); margin-top: 3px; white-space: pre-wrap; }
.answer { padding: 6px 0; }
.status { padding: 4px 0; }
.status.failed .status-text { color: #b71c1c; font-weight: 600; }
.progress { height: 6px; background: #eceff1; border-radius: 3px; overflow: hidden; margin-bottom: 4px; }
.progress span { display: block; height: 100%; background: var(--color-accent); transition: width 0.3s; }
.trace-card { border: 1px solid var(--border-color-primary); border-radius: 6px; padding: 6px 10px; }
.trace-meta { font-size: 0.85em; color: var(--body-text-color-subdued); }
.trace-question { font-weight: 600; max-height: 7.5em; overflow-y: auto; white-space: pre-wrap; }
.trace-options { list-style: none; padding-left: 4px; margin: 4px 0; }
.banner { padding: 4px 10px; border-radius: 6px; margin-bottom: 2px; font-size: 0.9em; }
.banner.tiny { background: #fff3e0; border: 1px solid #ef6c00; color: #7a3a00; }
.banner.label-only { background: #e3f2fd; border: 1px solid #1565c0; color: #0d3c74; }
.banner.real { background: #e8f5e9; border: 1px solid #2e7d32; color: #1b5e20; }
.banner.read-only { background: #ffebee; border: 1px solid #c62828; color: #7f0000; }
.alternatives li { margin-bottom: 6px; }
.alt-meta { font-size: 0.85em; color: var(--body-text-color-subdued); }
.alt-text { white-space: pre-wrap; }
kbd { border: 1px solid var(--border-color-primary); border-radius: 3px; padding: 0 4px; font-family: var(--font-mono); }
""" + render.kl_shade_css()
