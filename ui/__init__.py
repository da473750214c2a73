"""The Gradio app's parts: ``config`` (flags and variables), ``services`` (the work, no Gradio),
``render`` (HTML and figures, pure), ``handlers`` (events), ``layout`` (the page), ``shortcuts``
(keyboard script), ``gpu`` (ZeroGPU). ``app.py`` puts them together."""
