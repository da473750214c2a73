"""Support code shared by tests/ and bench/, so that neither imports the other; not part of the product.

- ``app_process``: ``python app.py`` in its own process (``AppProcess``), free ports, peak memory;
- ``app_api``: the app's API as the page calls it (``analyze_args``, ``QueueClient``);
- ``bad_inputs`` (with ``mp4_patch``) and ``outcomes``: the bad-input suite's files and how
  each one's outcome through the CLI or the app is judged;
- ``load``: the load scenario (labelers and queued analyses against a running app).

tests/ and bench/ import from here; nothing here imports tests/ or bench/ (tests/test_support_imports.py).
"""
