"""Messages for a person: one line a block (the demo), or a block a paragraph (``show``, ``tail``).

Tool calls get their input as indented JSON, a tool result that is JSON is indented too, and an
image is a placeholder with its type and size. Everything is a ``rich.text.Text`` built from the
data (never Rich markup), so nothing in a message can style or break the output.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console, RenderableType
from rich.highlighter import JSONHighlighter
from rich.padding import Padding
from rich.text import Text

from ..models import AgentMessage, ContentBlock, Image, Session, Thinking, ToolResult, ToolUse
from ..models import Text as TextBlock
from .common import size_text, ttl_text, when

__all__ = ["ROLE_STYLE", "print_header", "print_message", "render_block"]

ROLE_STYLE = {"user": "bold cyan", "assistant": "bold green", "tool": "bold yellow", "system": "bold magenta"}
_JSON_STYLE = JSONHighlighter()
_INDENT = 4


def render_block(block: ContentBlock) -> str:
    """One content block as a single line for a person."""
    if isinstance(block, TextBlock):
        return block.text
    if isinstance(block, ToolUse):
        return f"→ {block.name}({json.dumps(block.input, ensure_ascii=False)}) [{block.id}]"
    if isinstance(block, ToolResult):
        body = block.content if isinstance(block.content, str) else " ".join(map(render_block, block.content))
        return f"{'✗' if block.is_error else '←'} [{block.tool_use_id}] {body}"
    if isinstance(block, Thinking):
        return f"(thinking) {block.text}"
    assert isinstance(block, Image)
    return f"[image {block.media_type}, {len(block.data)} bytes]"


def print_header(console: Console, session: Session, ttl: float | None) -> None:
    """The session's configuration and bookkeeping, one ``label value`` line each."""
    console.print(Text.assemble(("session ", "bold"), (str(session.id), "bold")))
    fields: list[tuple[str, str]] = [
        ("model", session.model or "-"),
        ("messages", f"{len(session.messages)} held, {session.seq} appended"),
        ("created", when(session.created_at)),
        ("updated", when(session.updated_at)),
        ("expires", "never" if ttl is None else f"in {ttl_text(ttl)}"),
    ]
    if session.max_turns:
        fields.append(("max turns", str(session.max_turns)))
    fields += [(f"metadata.{key}", value) for key, value in sorted(session.metadata.items())]
    width = max(len(label) for label, _ in fields)
    for label, value in fields:
        console.print(Text.assemble((f"  {label:<{width}}  ", "dim"), value))
    if session.system_message is not None:
        console.print(Text("system", style=ROLE_STYLE["system"]))
        console.print(_indented(console, Text(session.system_message)))


def print_message(console: Console, seq: int, message: AgentMessage, tokens: str = "") -> None:
    """``#seq role`` (and ``tokens``, its count, when given), then each block indented below it."""
    head = Text.assemble((f"#{seq} ", "dim"), (message.role.value, ROLE_STYLE.get(message.role.value, "")))
    if tokens:
        head.append(f"  {tokens} tokens", style="dim")
    console.print(head)
    for block in message.content:
        console.print(_indented(console, _block(block)))


def _block(block: ContentBlock) -> Text:
    if isinstance(block, TextBlock):
        return Text(block.text)
    if isinstance(block, Thinking):
        return Text.assemble(("thinking: ", "dim italic"), (block.text, "dim italic"))
    if isinstance(block, Image):
        return Text(f"[image {block.media_type}, {size_text(len(block.data))}]", style="dim")
    if isinstance(block, ToolUse):
        call = Text.assemble(("→ ", "yellow"), (block.name, "bold yellow"), (f"  {block.id}", "dim"))
        return Text("\n").join([call, _shifted(_json(block.input))])
    assert isinstance(block, ToolResult)
    mark = Text.assemble(("✗ error " if block.is_error else "← ", "red" if block.is_error else "yellow"))
    mark.append(block.tool_use_id, style="dim")
    if isinstance(block.content, str):
        body = _json_text(block.content)
    else:
        body = Text("\n").join(_block(part) for part in block.content)
    return Text("\n").join([mark, _shifted(body)])


def _json_text(text: str) -> Text:
    """A tool's output: indented if it is a JSON object or array, else as it is."""
    if text.lstrip()[:1] in ("{", "["):
        try:
            return _json(json.loads(text))
        except ValueError:
            pass
    return Text(text)


def _json(value: Any) -> Text:
    return _JSON_STYLE(Text(json.dumps(value, indent=2, ensure_ascii=False)))


def _shifted(text: Text, by: int = 2) -> Text:
    """``text`` with ``by`` spaces before each of its lines (a block's body under its first line)."""
    pad = Text(" " * by)
    return Text("\n").join(pad + line for line in text.split("\n", allow_blank=True))


def _indented(console: Console, text: Text) -> RenderableType:
    """``text`` moved right; on a terminal wrapped lines stay indented, elsewhere nothing wraps."""
    if console.is_terminal:
        return Padding(text, (0, 0, 0, _INDENT), expand=False)
    return _shifted(text, _INDENT)
