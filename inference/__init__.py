"""video-SALMONN-o1 inference: media -> tensors -> model -> steps and scores.

Importing this package loads nothing: no torch, no weights, no GPU. Import the submodule you
need (``inference.media``, ``studio_trace``, ...).
"""
