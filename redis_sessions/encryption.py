"""``Encryption``: the ``encryption=`` store option, AES-256-GCM encryption of each stored message.

    from redis_sessions import SessionStore
    from redis_sessions.encryption import Encryption

    store = SessionStore.from_url(url, encryption=Encryption({"2026-12": key}, current="2026-12"))

Each message is sealed on its own (``_envelope``): its encoded bytes are encrypted with a fresh
96-bit nonce under the session's current key, and the **key id** travels in the clear beside the
ciphertext, so keys rotate without rewriting history: new messages take the new key, old ones
still open with theirs (``redis-sessions migrate --rekey`` re-seals them with the current key).
The session id and the message id are bound as associated data: a body copied into another session,
or put under another message's id, fails to open. Session metadata, configuration, seq and times
stay readable, so ``ls``/``info``/``stats`` work without keys.

A key is chosen per session by the keyring: a fixed ``{key_id: key}`` plus the ``current`` id, or a
callable ``keyring(session_id, key_id)`` returning ``(key_id, key)`` (with ``key_id=None``: the key
to seal with now) for per-tenant keys from a KMS (cache it: it is asked for every message). Keys are
32 random bytes (``os.urandom(32)``, ``AESGCM.generate_key(bit_length=256)``). Needs the ``crypto``
extra (the ``cryptography`` package, whose ``AESGCM`` does the work).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .errors import InvalidArgument, InvalidArgumentType
from .models import SessionId

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["Encryption", "Keyring"]

Keyring = Callable[[SessionId, str | None], tuple[str, bytes]]
"""``keyring(session_id, key_id)``: ``(key_id, key)``; ``key_id=None`` asks for the key to seal with."""

KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # GCM's 96-bit nonce, random per message: 2^32 messages per key stay far from a repeat


def _aesgcm() -> type[AESGCM]:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError as exc:  # tested with the import blocked
        raise ImportError(
            "encryption= needs the cryptography package: pip install 'redis-sessions[crypto]'"
        ) from exc
    return AESGCM


class Encryption:
    """Which key seals a session's messages now, and which opens a message sealed under ``key_id``.

    ``Encryption(keys, current=key_id)``: a fixed keyring; ``Encryption(keyring=callable)``: keys
    chosen by a callable (per tenant, from a KMS). A key id is a non-empty str of at most 255 UTF-8
    bytes; a key is 32 bytes.
    """

    def __init__(
        self,
        keys: Mapping[str, bytes] | None = None,
        current: str | None = None,
        *,
        keyring: Keyring | None = None,
    ) -> None:
        self._cipher = _aesgcm()
        if (keys is None) == (keyring is None):
            raise InvalidArgument("Encryption takes either keys= and current=, or keyring=")
        self._keyring = keyring
        self._keys: dict[str, Any] = {}
        self._current: tuple[str, Any] | None = None
        if keys is not None:
            if current is None or current not in keys:
                raise InvalidArgument(f"current key id {current!r} is not one of the keys")
            self._keys = {key_id: self._cipher(_checked(key_id, key)) for key_id, key in keys.items()}
            self._current = (current, self._keys[current])
        self._by_raw_id = {key_id.encode(): cipher for key_id, cipher in self._keys.items()}
        self._opened: dict[bytes, Any] = {}  # a callable keyring's keys, as ciphers, by key bytes

    def sealing(self, sid: SessionId) -> tuple[str, Any]:
        """``(key_id, cipher)`` to seal ``sid``'s new messages with."""
        if self._current is not None:
            return self._current
        assert self._keyring is not None
        key_id, key = self._keyring(sid, None)
        return key_id, self._cipher_of(key_id, key)

    def opening(self, sid: SessionId, key_id: str) -> Any | None:
        """The cipher of ``key_id`` for ``sid``, or ``None`` if the keyring has no such key."""
        if self._keyring is None:
            return self._keys.get(key_id)
        try:
            found_id, key = self._keyring(sid, key_id)
        except KeyError:
            return None
        return self._cipher_of(found_id, key) if found_id == key_id else None

    def opening_raw(self, sid: SessionId, key_id: bytes) -> Any | None:
        """``opening`` for a key id as stored (UTF-8 bytes): the read path's lookup, one dict get
        for a fixed keyring."""
        if self._keyring is None:
            return self._by_raw_id.get(key_id)
        return self.opening(sid, key_id.decode())

    def _cipher_of(self, key_id: str, key: bytes) -> Any:
        cipher = self._opened.get(key)
        if cipher is None:
            cipher = self._opened[key] = self._cipher(_checked(key_id, key))
        return cipher

    @staticmethod
    def nonce() -> bytes:
        return os.urandom(NONCE_BYTES)


def _checked(key_id: object, key: object) -> bytes:
    if not isinstance(key_id, str) or not key_id or len(key_id.encode()) > 255:
        raise InvalidArgumentType(f"a key id must be a non-empty str of at most 255 bytes, got {key_id!r}")
    if not isinstance(key, bytes) or len(key) != KEY_BYTES:
        raise InvalidArgumentType(f"key {key_id!r} must be {KEY_BYTES} bytes (AES-256)")
    return key
