"""vod-stream: the HTTP Range streaming server that every VideoPlatform pod runs."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vod-stream")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"
