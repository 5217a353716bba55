"""Content-Type by file extension, media formats first (the system's table varies by host)."""

from __future__ import annotations

import mimetypes
import os.path
from functools import lru_cache

MEDIA_TYPES: dict[str, str] = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".m4s": "video/iso.segment",
    ".cmfv": "video/mp4",
    ".cmfa": "audio/mp4",
    ".m4a": "audio/mp4",
    ".mp4a": "audio/mp4",
    ".webm": "video/webm",
    ".weba": "audio/webm",
    ".mkv": "video/x-matroska",
    ".mka": "audio/x-matroska",
    ".mov": "video/quicktime",
    ".m3u8": "application/vnd.apple.mpegurl",
    ".m3u": "audio/mpegurl",
    ".ts": "video/mp2t",
    ".m2ts": "video/mp2t",
    ".aac": "audio/aac",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".ogv": "video/ogg",
    ".opus": "audio/opus",
    ".flac": "audio/flac",
    ".wav": "audio/wav",
    ".avi": "video/x-msvideo",
    ".3gp": "video/3gpp",
    ".mpd": "application/dash+xml",
    ".vtt": "text/vtt; charset=utf-8",
    ".srt": "application/x-subrip",
    ".ttml": "application/ttml+xml",
    ".json": "application/json",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".key": "application/octet-stream",
}
DEFAULT_TYPE = "application/octet-stream"


def content_type(path: str) -> str:
    """The Content-Type for a file name."""
    return _by_suffix(os.path.splitext(path)[1].lower())


@lru_cache(maxsize=256)
def _by_suffix(suffix: str) -> str:
    known = MEDIA_TYPES.get(suffix)
    if known is not None:
        return known
    guessed, _ = mimetypes.guess_type("x" + suffix, strict=False)
    return guessed or DEFAULT_TYPE
