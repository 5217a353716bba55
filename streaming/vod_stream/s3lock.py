"""A lock kept in the bucket, with a lease: what serializes the PATCHes of one tus upload when
its state lives in S3 (``vod_stream.tuss3``) and any replica may receive them.

The lock is an object (``<upload>/lock``, JSON ``{"holder", "expires"}``) created only if absent
(``If-None-Match: *``): one creator wins, the others wait. Its holder deletes it when done. A
holder that died leaves it behind: once its lease is over, a waiter takes it over by overwriting
it only if it is still the object it read (``If-Match`` its ETag), so of two waiters one wins.
A holder renews its lease (the same conditional overwrite) while its PATCH lasts; one that finds
its lock taken over has lost it and stops writing. Leases compare wall clocks of replicas:
keep them in sync (NTP) well within ``LEASE_SECONDS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from typing import TYPE_CHECKING

from vod_stream.storage import origin_failure
from vod_stream.tusstore import Locked

if TYPE_CHECKING:
    from obstore.store import S3Store

#: How long a lock outlives its holder's last renewal.
LEASE_SECONDS = 60.0
#: A holder renews once this much of its lease has passed.
RENEW_AFTER_SECONDS = LEASE_SECONDS / 3
#: How often a waiter tries again.
POLL_SECONDS = 0.1


class LostLock(Exception):
    """The lease ran out and another request took the lock over."""


class LeaseLock:
    """A held lock: renew it while working, release it when done."""

    def __init__(self, store: S3Store, key: str, holder: str, etag: str) -> None:
        self._store = store
        self._key = key
        self._holder = holder
        self._etag = etag
        self._renewed = time.monotonic()

    @classmethod
    async def acquire(cls, store: S3Store, key: str, wait_seconds: float) -> LeaseLock:
        """The lock at ``key``, waiting up to ``wait_seconds`` for it; ``Locked`` if not."""
        import obstore
        from obstore.exceptions import AlreadyExistsError, NotFoundError, PreconditionError

        holder = secrets.token_hex(8)
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                done = await obstore.put_async(store, key, _lease(holder), mode="create")
                return cls(store, key, holder, done["e_tag"] or "")
            except AlreadyExistsError:
                pass
            except Exception as exc:
                raise origin_failure(exc) from None
            try:
                held = await obstore.get_async(store, key)
                etag = held.meta["e_tag"] or ""
                expires = float(json.loads(bytes(await held.bytes_async()))["expires"])
            except (NotFoundError, FileNotFoundError):
                continue  # released meanwhile: create it again
            except (ValueError, KeyError, TypeError):
                expires = 0.0  # not a lease: take it over
            except Exception as exc:
                raise origin_failure(exc) from None
            if expires < time.time():
                try:
                    done = await obstore.put_async(store, key, _lease(holder), mode={"e_tag": etag})
                    return cls(store, key, holder, done["e_tag"] or "")
                except (PreconditionError, NotFoundError, FileNotFoundError):
                    pass  # another waiter took it over first, or it was released
                except Exception as exc:
                    raise origin_failure(exc) from None
            if time.monotonic() >= deadline:
                raise Locked(key)
            await asyncio.sleep(POLL_SECONDS)

    async def renew(self) -> None:
        """Extend the lease when a third of it has passed; ``LostLock`` if it was taken over."""
        import obstore
        from obstore.exceptions import NotFoundError, PreconditionError

        if time.monotonic() - self._renewed < RENEW_AFTER_SECONDS:
            return
        try:
            done = await obstore.put_async(
                self._store, self._key, _lease(self._holder), mode={"e_tag": self._etag}
            )
        except (PreconditionError, NotFoundError, FileNotFoundError):
            raise LostLock(self._key) from None
        except Exception as exc:
            raise origin_failure(exc) from None
        self._etag = done["e_tag"] or ""
        self._renewed = time.monotonic()

    async def release(self) -> None:
        """Delete the lock (a failure only delays the next holder by the lease)."""
        import obstore

        with contextlib.suppress(Exception):  # the lease ends it anyway
            await obstore.delete_async(self._store, self._key)


def _lease(holder: str) -> bytes:
    return json.dumps({"holder": holder, "expires": time.time() + LEASE_SECONDS}).encode()
