"""The data plane process: ``python -m vod_stream.dataplane`` (the supervisor starts it).

It imports nothing but the compiled extension, so the process stays small; the supervisor
passes the listening socket, a pipe to say it is ready, and the settings as JSON.
"""

from __future__ import annotations

import os
import sys

CONFIG_ENV = "VOD_DATAPLANE_CONFIG"
LISTEN_FD_ENV = "VOD_DATAPLANE_LISTEN_FD"
READY_FD_ENV = "VOD_DATAPLANE_READY_FD"


def main() -> int:
    from vod_stream import _dataplane

    config = os.environ.pop(CONFIG_ENV)
    listen_fd = int(os.environ.pop(LISTEN_FD_ENV))
    ready_fd = int(os.environ.pop(READY_FD_ENV, "-1"))
    return _dataplane.serve(config, listen_fd, ready_fd)


if __name__ == "__main__":
    sys.exit(main())
