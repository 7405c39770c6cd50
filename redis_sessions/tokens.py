"""Token counts: how a store counts a message's tokens, and what a budgeted read returns.

A store counts each message once, when it is appended, with its ``token_counter`` (a callable
``AgentMessage -> int``), and keeps the count in Redis beside the message, with the session's running
total, in the same atomic step. The default, ``estimate_tokens``, needs no download and no package:
about one token per four characters of text (the ratio OpenAI and Anthropic document for English),
plus a small overhead per message and per block, and a flat count per image. It errs high for
English prose and is within ~25 % of real tokenizers for code and JSON; pass a real tokenizer's
counter (tiktoken, a Hugging Face tokenizer) when the budget must be exact::

    enc = tiktoken.get_encoding("o200k_base")
    store = SessionStore(client, token_counter=lambda m: len(enc.encode(m.text)) + 4)

A message stored before its session was counted (by an older version of this library) counts as its
encoded size in bytes / 4, the same estimate, taken by the read script.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Final, TypeAlias

import msgspec

from .models import AgentMessage, Image, Role, Text, Thinking, ToolResult, ToolUse

__all__ = ["Context", "Summarizer", "TokenCounter", "estimate_tokens", "is_tool_result", "keep_newest"]

TokenCounter: TypeAlias = Callable[[AgentMessage], int]
"""What counts a message's tokens: ``token_counter=`` of a store."""

Summarizer: TypeAlias = Callable[[list[AgentMessage]], AgentMessage | str | Awaitable[AgentMessage | str]]
"""What ``store.compact`` calls: the messages to fold (the previous summary first) to a summary."""

MESSAGE_OVERHEAD: Final = 4
"""Tokens every message costs beyond its content (role and separators, as chat formats add)."""
IMAGE_TOKENS: Final = 1000
"""A flat estimate per image: providers charge ~85-1,600 by size; a budget should not be exceeded."""
_BLOCK_OVERHEAD: Final = 3
_CHARS_PER_TOKEN: Final = 4
_TEXTS: Final = (Text, Thinking)  # a tuple: isinstance with ``Text | Thinking`` costs 0.7k instructions more


def _chars(text: str) -> int:
    return -(-len(text) // _CHARS_PER_TOKEN)  # ceil: a short text is at least one token


def estimate_tokens(message: AgentMessage) -> int:
    """About one token per four characters of the message's text, tool inputs (as JSON) and tool
    results, plus ``MESSAGE_OVERHEAD`` per message, 3 per block and ``IMAGE_TOKENS`` per image."""
    total = MESSAGE_OVERHEAD
    for block in message.content:
        total += _BLOCK_OVERHEAD
        if isinstance(block, _TEXTS):
            total += _chars(block.text)
        elif isinstance(block, ToolUse):
            total += _chars(block.name) + -(-len(msgspec.json.encode(block.input)) // _CHARS_PER_TOKEN)
        elif isinstance(block, ToolResult):
            parts = [block.content] if isinstance(block.content, str) else block.content
            for part in parts:
                if isinstance(part, str):
                    total += _chars(part)
                elif isinstance(part, Text):
                    total += _chars(part.text)
                else:
                    total += IMAGE_TOKENS
        elif isinstance(block, Image):
            total += IMAGE_TOKENS
    return total


def is_tool_result(message: AgentMessage) -> bool:
    """Whether the message answers a tool use (a tool message, or one holding a tool result): a
    context must not start with one, its tool use being cut off."""
    return message.role is Role.TOOL or any(isinstance(b, ToolResult) for b in message.content)


def keep_newest(messages: Sequence[AgentMessage], counts: Sequence[int], budget: int) -> int:
    """The index of the first of ``messages`` to keep: the newest whose ``counts`` add up to at most
    ``budget``, moved past tool results whose tool use would be cut off (so a tool use and its
    result are kept together or dropped together)."""
    start, used = len(messages), 0
    while start > 0 and used + counts[start - 1] <= budget:
        start -= 1
        used += counts[start]
    while start < len(messages) and is_tool_result(messages[start]):
        start += 1
    return start


class Context(msgspec.Struct, frozen=True, kw_only=True):
    """What fits a model's window: ``store.context(session_id, max_tokens)``.

    ``summary``: the session's stored summary (``store.summarize``), a text one as a system message,
    or ``None``; ``messages``: the newest messages after it that fit the budget (never starting with
    a tool result whose tool use was cut off); ``counts``: each message's stored count; ``tokens``:
    the counts of the summary and the messages, added up; ``first_seq``: the seq of ``messages[0]``
    (one past the session's seq when there are none); ``seq``: the session's seq when read.
    """

    summary: AgentMessage | None
    messages: list[AgentMessage]
    counts: list[int]
    tokens: int
    first_seq: int
    seq: int

    def as_list(self) -> list[AgentMessage]:
        """The summary (if any) then the messages: what to send to the model."""
        return self.messages if self.summary is None else [self.summary, *self.messages]
