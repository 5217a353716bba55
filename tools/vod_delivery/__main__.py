"""Entry point for `python -m vod_delivery`."""

from vod_delivery.cli import main

raise SystemExit(main())
