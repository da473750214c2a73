"""video-SALMONN-o1 Studio: ``python app.py --help`` for the flags (each has an environment
variable, for Hugging Face Spaces). Reads the configuration, opens the store, starts loading
the model in the background and serves the page; everything else is in ``ui/``."""

from __future__ import annotations

import logging
import sys

from annotation_db import StoreError
from inference.errors import UserError


def main(argv: list[str] | None = None) -> int:
    from ui.config import parse_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        config = parse_config(argv)
        from ui.layout import build_app, launch_kwargs
        from ui.services import Studio, freeze_long_lived_objects
        from ui.storage import announce_storage

        announce_storage(config)
        studio = Studio(config)
    except (UserError, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if studio.models is not None and config.preload:
        studio.models.start_background()
    demo = build_app(config, studio)
    freeze_long_lived_objects()  # again once the model is loaded (ui.services.ModelHolder)
    demo.launch(**launch_kwargs(config, studio))
    return 0


if __name__ == "__main__":
    sys.exit(main())
