"""``python -m vod_stream`` runs the server, as ``vod-stream serve`` does."""

import sys

from vod_stream.cli import main

if __name__ == "__main__":
    sys.exit(main())
