"""Content-Type by file extension, media formats first (the system's table varies by host).

The data plane answers media with this table: ``content_type_table`` is handed to it at start.
"""

from __future__ import annotations

import mimetypes

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


def content_type_table() -> dict[str, str]:
    """Every known suffix (lower case, with its dot) and its Content-Type: the media types
    above, then the system's table (strict and common types)."""
    mimetypes.init()
    table = {s.lower(): t for s, t in mimetypes.common_types.items()}
    table.update({s.lower(): t for s, t in mimetypes.types_map.items()})
    table.update(MEDIA_TYPES)
    return table
