"""Backend services' public keys published at an address (`jwks_uri`, SMART Backend Services):
fetched when first needed, kept for `FRESH_FOR`, fetched again at once for a key id not seen
yet (the service rotated its keys), and used stale for up to `STALE_FOR` when the address does
not answer.

Fetched with a timeout, at most `MAX_BYTES`, without following redirects, over https only (http
only to a loopback address, for tests and a service on the same host). Called from the token
endpoint's route, which FastAPI runs in a worker thread: a slow key server never holds the
event loop.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from joserfc.errors import JoseError
from joserfc.jwk import KeySet

TIMEOUT_SECONDS = 5.0
MAX_BYTES = 64 * 1024
FRESH_FOR = 600.0
STALE_FOR = 24 * 3600.0
# A key id not in a key set fetched this recently is not worth another fetch (a burst of
# assertions naming an unknown key costs one fetch).
REFETCH_AFTER = 1.0
LOOPBACK = ("localhost", "127.0.0.1", "::1")


class KeySetUnavailable(Exception):
    """The key set could not be fetched or read (the message says why, for the service)."""


def address_problem(url: str) -> str | None:
    """Why `url` cannot be a key set address, or None."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname in LOOPBACK:
        return None
    return "must be an https address (http only for localhost)"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        raise KeySetUnavailable("the key set address answered with a redirect")


_opener = urllib.request.build_opener(_NoRedirects)


def fetch(url: str, timeout: float = TIMEOUT_SECONDS) -> KeySet:
    """The public keys at `url` (network I/O: call from a worker thread)."""
    problem = address_problem(url)
    if problem:
        raise KeySetUnavailable(f"jwks_uri {problem}")
    request = urllib.request.Request(  # noqa: S310 (scheme checked above)
        url, headers={"Accept": "application/json", "User-Agent": "Tandem"}
    )
    try:
        with _opener.open(request, timeout=timeout) as answer:
            body = answer.read(MAX_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise KeySetUnavailable(f"the key set address answered {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise KeySetUnavailable(f"the key set address did not answer ({reason})") from None
    if len(body) > MAX_BYTES:
        raise KeySetUnavailable(f"the key set is larger than {MAX_BYTES // 1024} KB")
    try:
        data = json.loads(body)
        keys = KeySet.import_key_set(data)
    except (ValueError, TypeError, KeyError, JoseError):
        raise KeySetUnavailable("the key set address did not give a JSON Web Key Set") from None
    public = [k for k in keys.keys if not k.is_private and k.key_type in ("RSA", "EC")]
    if not public:
        raise KeySetUnavailable("the key set holds no public RSA or EC key")
    return KeySet(public)


@dataclass
class _Entry:
    keys: KeySet
    fetched: float  # time.monotonic()


class KeySetCache:
    """Key sets by address, shared by the threads of one process."""

    def __init__(self, fresh_for: float = FRESH_FOR, stale_for: float = STALE_FOR) -> None:
        self.fresh_for = fresh_for
        self.stale_for = stale_for
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, url: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(url, threading.Lock())

    def keys_for(self, url: str, kid: str | None) -> KeySet:
        """The key set at `url` holding `kid` if it can: the cached one while fresh and holding
        the key id, otherwise fetched (once; threads asking at the same time share the fetch)."""
        entry = self._entries.get(url)
        if entry is not None and self._usable(entry, kid, time.monotonic()):
            return entry.keys
        with self._lock(url):
            entry = self._entries.get(url)
            started = time.monotonic()
            if entry is not None and (
                self._usable(entry, kid, started) or started - entry.fetched < REFETCH_AFTER
            ):
                return entry.keys  # another thread fetched it just now
            try:
                keys = fetch(url)
            except KeySetUnavailable:
                if entry is not None and started - entry.fetched < self.stale_for:
                    return entry.keys
                raise
            self._entries[url] = _Entry(keys, time.monotonic())
            return keys

    def _usable(self, entry: _Entry, kid: str | None, now: float) -> bool:
        if now - entry.fetched >= self.fresh_for:
            return False
        return kid is None or any(k.kid == kid for k in entry.keys.keys)

    def forget(self, url: str) -> None:
        self._entries.pop(url, None)


CACHE = KeySetCache()
