"""How messages become bytes in Redis and back: MessagePack (default) or JSON, via msgspec.

Encoders and decoders are built once per codec and reused. A read decodes a whole range in one call
by framing the stored items as one array (a MessagePack array header, or ``[`` ``,`` ``]`` for JSON),
which is several times faster than one ``decode`` per item; only when that fails do we decode item by
item to report the first corrupt position.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Sequence
from typing import Any, Final, Literal

import msgspec

from .errors import CorruptSession
from .models import AgentMessage, decode_persisted

__all__ = ["CODECS", "Codec", "CodecName", "JsonCodec", "MsgpackCodec"]

CodecName = Literal["msgpack", "json"]


class Codec:
    """Encodes one message, decodes a range of stored messages."""

    name: CodecName

    def __init__(self) -> None:
        self._encoder: msgspec.msgpack.Encoder | msgspec.json.Encoder
        self._raw: msgspec.msgpack.Decoder[Any] | msgspec.json.Decoder[Any]
        self._one: msgspec.msgpack.Decoder[AgentMessage] | msgspec.json.Decoder[AgentMessage]
        self._many: msgspec.msgpack.Decoder[list[AgentMessage]] | msgspec.json.Decoder[list[AgentMessage]]

    def encode(self, message: AgentMessage) -> bytes:
        return self._encoder.encode(message)

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

    def frame(self, items: Sequence[bytes]) -> bytes:
        return b"[" + b",".join(items) + b"]"


CODECS: Final[dict[str, Codec]] = {"msgpack": MsgpackCodec(), "json": JsonCodec()}
"""One shared instance per codec name (msgspec encoders/decoders are thread-safe to reuse)."""
