"""CORS for configured origins: preflights answered, and the headers a player needs to seek
(Content-Range, Accept-Ranges, Content-Length, ETag) exposed."""

from __future__ import annotations

ALLOW_METHODS = "GET, HEAD, PUT, DELETE, OPTIONS"
ALLOW_HEADERS = (
    "Range, If-Range, If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since, "
    "Authorization, Content-Type, X-Request-Id, traceparent"
)
EXPOSE_HEADERS = "Content-Range, Accept-Ranges, Content-Length, ETag, Last-Modified, X-Request-Id"
MAX_AGE = "600"


class Cors:
    def __init__(self, allowed_origins: tuple[str, ...]) -> None:
        self._any = "*" in allowed_origins
        self._origins = frozenset(o.rstrip("/") for o in allowed_origins)

    @property
    def enabled(self) -> bool:
        return self._any or bool(self._origins)

    def allows(self, origin: str) -> bool:
        return self._any or origin in self._origins

    def response_headers(self, origin: str | None) -> dict[str, str]:
        """Headers for an actual (non-preflight) response."""
        if not origin or not self.enabled:
            return {}
        if not self.allows(origin):
            return {"Vary": "Origin"}
        return {
            "Access-Control-Allow-Origin": "*" if self._any else origin,
            "Access-Control-Expose-Headers": EXPOSE_HEADERS,
            "Vary": "Origin",
        }

    def preflight_headers(self, origin: str, method: str) -> dict[str, str] | None:
        """Headers for a preflight, or ``None`` when the origin or method is not allowed."""
        if not self.allows(origin) or method.upper() not in ALLOW_METHODS.split(", "):
            return None
        return {
            "Access-Control-Allow-Origin": "*" if self._any else origin,
            "Access-Control-Allow-Methods": ALLOW_METHODS,
            "Access-Control-Allow-Headers": ALLOW_HEADERS,
            "Access-Control-Max-Age": MAX_AGE,
            "Vary": "Origin",
        }
