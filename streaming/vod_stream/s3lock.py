"""A lock kept in the bucket, with a lease: what serializes the PATCHes of one tus upload when
its state lives in S3 (``vod_stream.tuss3``) and any replica may receive them.

The lock is an object (``<upload>/lock``, JSON ``{"holder", "expires"}``) created only if absent
(``If-None-Match: *``): one creator wins, the others wait. Its holder deletes it when done. A
holder that died leaves it behind: once its lease is over, a waiter takes it over by overwriting
it only if it is still the object it read (``If-Match`` its ETag), so of two waiters one wins.
A holder renews its lease (the same conditional overwrite) every third of the lease from a task
of its own, so a PATCH whose body pauses or whose part upload is slow keeps its lock; one whose
renewal is refused has lost the lock and stops writing. Even then it cannot overwrite a newer
state: the upload's state is only replaced conditionally (``vod_stream.tuss3``). Leases compare
the wall clocks of replicas: keep them in sync (NTP) well within the lease
(``VOD_TUS_LOCK_LEASE_SECONDS``).
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

#: A holder renews its lease each time this fraction of it has passed.
RENEW_FRACTION = 1 / 3
#: How often a waiter tries again.
POLL_SECONDS = 0.1


class LostLock(Exception):
    """The lease ran out and another request took the lock over."""


class LeaseLock:
    """A held lock, renewed in the background until ``release``."""

    def __init__(self, store: S3Store, key: str, lease: float, holder: str, etag: str) -> None:
        self._store = store
        self._key = key
        self._lease = lease
        self._holder = holder
        self._etag = etag
        self._lost = False
        self._renewing = asyncio.get_running_loop().create_task(self._keep())

    @classmethod
    async def acquire(
        cls, store: S3Store, key: str, lease: float, wait_seconds: float
    ) -> LeaseLock:
        """The lock at ``key`` with a lease of ``lease`` seconds, waiting up to
        ``wait_seconds`` for it; ``Locked`` if not."""
        import obstore
        from obstore.exceptions import AlreadyExistsError, NotFoundError, PreconditionError

        holder = secrets.token_hex(8)
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                done = await obstore.put_async(store, key, _lease(holder, lease), mode="create")
                return cls(store, key, lease, holder, done["e_tag"] or "")
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
                    done = await obstore.put_async(
                        store, key, _lease(holder, lease), mode={"e_tag": etag}
                    )
                    return cls(store, key, lease, holder, done["e_tag"] or "")
                except (PreconditionError, NotFoundError, FileNotFoundError):
                    pass  # another waiter took it over first, or it was released
                except Exception as exc:
                    raise origin_failure(exc) from None
            if time.monotonic() >= deadline:
                raise Locked(key)
            await asyncio.sleep(POLL_SECONDS)

    def check(self) -> None:
        """``LostLock`` when the lease ran out and another request took the lock over."""
        if self._lost:
            raise LostLock(self._key)

    async def _keep(self) -> None:
        """Renew the lease every third of it until released or taken over (a renewal that
        fails for another reason, S3 unreachable, is tried again at the next turn)."""
        import obstore
        from obstore.exceptions import NotFoundError, PreconditionError

        while True:
            await asyncio.sleep(self._lease * RENEW_FRACTION)
            lease = _lease(self._holder, self._lease)
            try:
                done = await obstore.put_async(
                    self._store, self._key, lease, mode={"e_tag": self._etag}
                )
            except (PreconditionError, NotFoundError, FileNotFoundError):
                self._lost = True
                return
            except Exception:  # unreachable for now: the next turn tries again
                continue
            self._etag = done["e_tag"] or ""

    async def release(self) -> None:
        """Stop renewing and delete the lock (unless it was taken over; a failed delete only
        delays the next holder by the lease)."""
        import obstore

        self._renewing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._renewing
        if not self._lost:
            with contextlib.suppress(Exception):
                await obstore.delete_async(self._store, self._key)


def _lease(holder: str, seconds: float) -> bytes:
    return json.dumps({"holder": holder, "expires": time.time() + seconds}).encode()
