"""How messages become bytes in Redis and back: MessagePack (default) or JSON, via msgspec.

Encoders and decoders are built once per codec and reused. A read decodes a whole range in one call
by framing the stored items as one array (a MessagePack array header, or ``[`` ``,`` ``]`` for JSON),
which is several times faster than one ``decode`` per item; only when that fails do we decode item by
item to report the first corrupt position.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Final, Literal

import msgspec

from ._envelope import header, is_sealed, open_sealed, stand_in
from ._stored import decode_persisted
from .encryption import Encryption
from .errors import CorruptSession
from .models import AgentMessage, SessionId

__all__ = ["CODECS", "Codec", "CodecName", "JsonCodec", "MsgpackCodec", "SealedCodec", "readers"]

CodecName = Literal["msgpack", "json"]


class Codec:
    """Encodes one message, decodes a range of stored messages."""

    name: CodecName

    def __init__(self) -> None:
        self._encoder: msgspec.msgpack.Encoder | msgspec.json.Encoder
        self._raw: msgspec.msgpack.Decoder[Any] | msgspec.json.Decoder[Any]
        self._one: msgspec.msgpack.Decoder[AgentMessage] | msgspec.json.Decoder[AgentMessage]
        self._many: msgspec.msgpack.Decoder[list[AgentMessage]] | msgspec.json.Decoder[list[AgentMessage]]
        # Both run on every append: each codec binds its msgspec encoder's and decoder's own
        # methods here, with no Python frame around them.
        self.encode: Callable[[AgentMessage], bytes]
        """One message's bytes."""
        self.check_fresh: Callable[[bytes], object]
        """``check`` for what ``encode`` just made of a message whose id was checked (a write's
        check): the guards ``decode_persisted`` keeps for stored bytes, a missing id and invalid
        UTF-8, cannot apply to it, and cost half the check on every append."""

    def raw(self, data: bytes) -> dict[str, object]:
        """One stored message as plain data, without the typed decode (for schema upgrades)."""
        value = decode_persisted(self._raw.decode, data)
        if not isinstance(value, dict):
            raise msgspec.DecodeError(f"a stored message is a {type(value).__name__}, not a map")
        return value

    def check(self, data: bytes) -> None:
        """Raise ``msgspec.DecodeError`` unless ``data`` decodes as one message."""
        decode_persisted(self._one.decode, data)

    def frame(self, items: Sequence[bytes]) -> bytes:
        raise NotImplementedError

    def opened(self, sid: SessionId, data: bytes, position: int | None) -> bytes:
        """``data`` as the codec encoded it: a sealed message needs a keyring (``SealedCodec``);
        bytes that only start like one are left to the codec to call corrupt."""
        if is_sealed(data):
            try:
                header(sid, data, position)
            except CorruptSession:
                return data
            open_sealed(None, sid, data, position)  # raises: DecryptionError, no keyring
        return data

    def keeping_sealed(self, sid: SessionId, items: Sequence[bytes], first: int = 0) -> list[AgentMessage]:
        """``decode``, but a sealed message comes back as its stand-in (``_envelope``), unopened:
        what the write-behind worker hands the backing record, without a key."""
        if not any(map(is_sealed, items)):
            return self.decode(sid, items, first)
        return [
            stand_in(sid, item, first + i) if is_sealed(item) else self.decode(sid, [item], first + i)[0]
            for i, item in enumerate(items)
        ]

    def decode(self, sid: uuid.UUID, items: Sequence[bytes], first: int = 0) -> list[AgentMessage]:
        """Decode stored items; ``first`` is the list position of ``items[0]``, for error reports."""
        if not items:
            return []
        try:
            decoded = decode_persisted(self._many.decode, self.frame(items))
            if len(decoded) == len(items):
                return decoded
        except msgspec.DecodeError:
            pass
        for i, item in enumerate(items):
            self.opened(sid, item, first + i)  # a sealed one: DecryptionError, which says why
            try:
                decode_persisted(self._one.decode, item)
            except msgspec.DecodeError as exc:
                raise CorruptSession(sid, f"undecodable {self.name} message: {exc}", first + i) from exc
        # Each item decodes alone but not framed together: only possible with trailing bytes.
        raise CorruptSession(sid, f"undecodable {self.name} message range", first)


class MsgpackCodec(Codec):
    name: Final = "msgpack"

    def __init__(self) -> None:
        self._encoder = msgspec.msgpack.Encoder()
        self._one = msgspec.msgpack.Decoder(AgentMessage)
        self._raw = msgspec.msgpack.Decoder()
        self._many = msgspec.msgpack.Decoder(list[AgentMessage])
        self.encode, self.check_fresh = self._encoder.encode, self._one.decode

    def frame(self, items: Sequence[bytes]) -> bytes:
        n = len(items)
        if n < 16:
            head = bytes((0x90 | n,))
        elif n < 65536:
            head = b"\xdc" + struct.pack(">H", n)
        else:
            head = b"\xdd" + struct.pack(">I", n)
        return head + b"".join(items)


class JsonCodec(Codec):
    name: Final = "json"

    def __init__(self) -> None:
        self._encoder = msgspec.json.Encoder()
        self._one = msgspec.json.Decoder(AgentMessage)
        self._raw = msgspec.json.Decoder()
        self._many = msgspec.json.Decoder(list[AgentMessage])
        self.encode, self.check_fresh = self._encoder.encode, self._one.decode

    def frame(self, items: Sequence[bytes]) -> bytes:
        return b"[" + b",".join(items) + b"]"


CODECS: Final[dict[str, Codec]] = {"msgpack": MsgpackCodec(), "json": JsonCodec()}
"""One shared instance per codec name (msgspec encoders/decoders are thread-safe to reuse)."""


class SealedCodec(Codec):
    """A codec that opens sealed messages (``encryption=``) before decoding; plain ones (written
    before encryption was switched on) decode as they are."""

    def __init__(self, inner: Codec, encryption: Encryption) -> None:
        self.inner = inner
        self.name = inner.name
        self.encryption = encryption
        self.encode, self.check_fresh = inner.encode, inner.check_fresh

    def raw(self, data: bytes) -> dict[str, object]:
        return self.inner.raw(data)

    def check(self, data: bytes) -> None:
        self.inner.check(data)

    def frame(self, items: Sequence[bytes]) -> bytes:
        return self.inner.frame(items)

    def opened(self, sid: SessionId, data: bytes, position: int | None) -> bytes:
        return open_sealed(self.encryption, sid, data, position) if is_sealed(data) else data

    def decode(self, sid: uuid.UUID, items: Sequence[bytes], first: int = 0) -> list[AgentMessage]:
        plain = [self.opened(sid, item, first + i) for i, item in enumerate(items)]
        return self.inner.decode(sid, plain, first)


def readers(encryption: Encryption | None) -> dict[str, Codec]:
    """The codecs a store reads with, by name: ``CODECS``, or each wrapped to open sealed messages."""
    if encryption is None:
        return CODECS
    return {name: SealedCodec(codec, encryption) for name, codec in CODECS.items()}
