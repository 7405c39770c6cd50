"""What the ADK service stores: events as ``AgentMessage`` s and back, state values as JSON, the
records' keys and metadata fields, sessions rebuilt from snapshots; and the service's errors.

Imports Google ADK: only ``redis_sessions.integrations.adk`` imports this module, after its guard.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec
import pydantic
import pydantic_core
from google.adk.errors import StaleSessionError
from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.errors.session_not_found_error import SessionNotFoundError
from google.adk.events.event import Event
from google.adk.sessions import Session as AdkSession
from google.adk.sessions import State
from google.adk.sessions.base_session_service import GetSessionConfig
from google.genai import types

from .. import (
    AgentMessage,
    ConflictError,
    ContentBlock,
    CorruptSession,
    Role,
    Session,
    SessionError,
    SessionExists,
    SessionNotFound,
    Text,
    Thinking,
    ToolResult,
    ToolUse,
)
from ._common import SESSION_NAMESPACE, clone, session_uuid

__all__ = [
    "SESSION",
    "STATE",
    "USER",
    "InvalidName",
    "NoSuchSession",
    "SessionAlreadyExists",
    "StaleSession",
    "WrongType",
    "app_record",
    "check",
    "dumps",
    "fields",
    "loads",
    "merged",
    "name",
    "name_of",
    "named",
    "session_of",
    "sid_of",
    "split_state",
    "state_of",
    "to_event",
    "to_message",
    "user_record",
]

_JSON = msgspec.json.Decoder()
STATE, USER, SESSION = "s:", "u:", "i:"  # record metadata: a state key, a user, a session id


class StaleSession(ConflictError, StaleSessionError):
    """``append_event`` with a ``Session`` read before another writer appended to it: nothing was
    written. Also ADK's ``StaleSessionError`` (a ``ValueError``), which ADK's callers catch."""

    def __init__(self, session_id: uuid.UUID, name: str, expected: int, actual: int) -> None:
        SessionError.__init__(
            self,
            f"ADK session {name} has been modified in storage since it was loaded (at event {expected}, "
            f"now at {actual}): nothing was written; get_session again and redo the turn",
        )
        self.session_id = session_id
        self.expected = expected
        self.actual = actual


class NoSuchSession(SessionNotFound, SessionNotFoundError):
    """``append_event`` to a session that does not exist (also ADK's ``SessionNotFoundError``)."""

    def __init__(self, session_id: uuid.UUID, name: str) -> None:
        super().__init__(session_id)
        self.name = name

    def __str__(self) -> str:
        return f"ADK session {self.name} not found (stored as `{self.session_id}`)"


class SessionAlreadyExists(SessionExists, AlreadyExistsError):
    """``create_session`` with an id that is taken (also ADK's ``AlreadyExistsError``)."""

    def __init__(self, session_id: uuid.UUID, name: str) -> None:
        SessionError.__init__(self, f"ADK session {name} already exists")
        self.session_id = session_id


class InvalidName(SessionError, ValueError):
    """An app name, user id or session id that is not a non-empty str (nothing was sent)."""

    def __init__(self, what: str, value: object) -> None:
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        super().__init__(f"ADK {what} must be a non-empty str, got {shown}")
        self.value = value


class WrongType(SessionError, TypeError):
    """An argument of the wrong type: not a store, a ``Session`` or an ``Event`` (nothing was sent)."""

    def __init__(self, what: str, value: object) -> None:
        super().__init__(f"RedisSessionService needs {what}, got {type(value).__name__}")


def dumps(value: Any) -> str:
    """A state value as JSON; what JSON cannot hold becomes its ``repr`` (as ADK's database
    service does), so one odd value cannot fail a whole turn."""
    return pydantic_core.to_json(value, fallback=repr).decode()


def loads(text: str) -> Any:
    return _JSON.decode(text)


def split_state(state: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``(app, user, session)`` deltas of a state dict, prefixes taken off; ``temp:`` keys dropped."""
    app: dict[str, Any] = {}
    user: dict[str, Any] = {}
    session: dict[str, Any] = {}
    for key, value in (state or {}).items():
        if key.startswith(State.APP_PREFIX):
            app[key.removeprefix(State.APP_PREFIX)] = value
        elif key.startswith(State.USER_PREFIX):
            user[key.removeprefix(State.USER_PREFIX)] = value
        elif not key.startswith(State.TEMP_PREFIX):
            session[key] = value
    return app, user, session


def to_message(event: Event) -> AgentMessage:
    """An event as a message: typed blocks for other readers, the event's JSON in ``extra["adk"]``
    (checked to validate back to an equal event), its time in ``extra["adk_ts"]`` and its
    session-scoped state delta (JSON values) in ``extra["adk_state"]``.

    The message id is a uuid5 of that JSON: appending an equal event again (a retry) stores
    nothing, while two different events that share an ``id`` are both kept (as ADK's in-memory
    service does)."""
    if not isinstance(event, Event):
        raise WrongType("a google.adk Event", event)
    text = event.model_dump_json(exclude_none=True)
    if Event.model_validate_json(text) != event:
        text = event.model_dump_json()
    extra: dict[str, Any] = {"adk": text, "adk_ts": event.timestamp}
    _, _, session_delta = split_state(event.actions.state_delta if event.actions else None)
    if session_delta:
        extra["adk_state"] = loads(dumps(session_delta))
    role, blocks = _blocks(event)
    return AgentMessage(role, blocks, str(uuid.uuid5(SESSION_NAMESPACE, "adk-event\0" + text)), extra)


def to_event(message: AgentMessage) -> Event:
    """The event a message holds; a message another writer stored becomes a text event."""
    extra = message.extra or {}
    text = extra.get("adk")
    if isinstance(text, str):
        return Event.model_validate_json(text)
    author = "user" if message.role is Role.USER else "model"
    parts = [types.Part(text=message.text)] if message.text else []
    return Event(
        id=message.id,
        invocation_id="",
        author=author,
        content=types.Content(role="user" if author == "user" else "model", parts=parts),
        custom_metadata={"redis_sessions_extra": clone(extra)} if extra else None,
    )


def _blocks(event: Event) -> tuple[Role, list[ContentBlock]]:
    blocks: list[ContentBlock] = []
    role = Role.USER if event.author == "user" else Role.ASSISTANT
    parts = (event.content.parts if event.content else None) or []
    for part in parts:
        if part.text is not None:
            blocks.append(Thinking(part.text) if part.thought else Text(part.text))
        elif part.function_call is not None:
            call = part.function_call
            blocks.append(ToolUse(call.id or "", call.name or "", loads(dumps(call.args or {}))))
        elif part.function_response is not None:
            answer = part.function_response
            blocks.append(ToolResult(answer.id or "", dumps(answer.response or {})))
            role = Role.TOOL
    return role, blocks


def session_of(
    stored: Session, app_state: dict[str, Any], user_state: dict[str, Any], config: GetSessionConfig
) -> AdkSession:
    """An ADK session from a stored snapshot: state folded from the events' deltas;
    ``CorruptSession`` if what the service stored in it does not decode."""
    try:
        return _session_of(stored, app_state, user_state, config)
    except (msgspec.DecodeError, pydantic.ValidationError, ValueError, TypeError) as exc:
        raise CorruptSession(stored.id, f"its ADK data does not decode: {exc}") from exc


def _session_of(
    stored: Session, app_state: dict[str, Any], user_state: dict[str, Any], config: GetSessionConfig
) -> AdkSession:
    meta = stored.metadata
    state: dict[str, Any] = dict(loads(meta.get("adk_state", "{}")))
    last = float(meta.get("adk_created", "0"))
    kept = []
    for message in stored.messages:
        extra = message.extra or {}
        state.update(extra.get("adk_state") or {})
        stamp = extra.get("adk_ts")
        last = float(stamp) if isinstance(stamp, int | float) else last
        if (
            config.after_timestamp is None
            or not isinstance(stamp, int | float)
            or stamp >= config.after_timestamp
        ):
            kept.append(message)
    if config.num_recent_events is not None:
        kept = kept[-config.num_recent_events :] if config.num_recent_events else []
    session = AdkSession(
        id=meta.get("external_id", str(stored.id)),
        app_name=meta.get("adk_app", ""),
        user_id=meta.get("adk_user", ""),
        state=merged(app_state, user_state, state),
        events=[to_event(m) for m in kept],
        last_update_time=last,
    )
    session._storage_update_marker = str(stored.seq)
    return session


def merged(app: dict[str, Any], user: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    merged = dict(own)
    merged.update({State.APP_PREFIX + k: v for k, v in app.items()})
    merged.update({State.USER_PREFIX + k: v for k, v in user.items()})
    return merged


def fields(delta: dict[str, Any]) -> dict[str, str | None]:
    return {STATE + key: dumps(value) for key, value in delta.items()}


def state_of(sid: uuid.UUID, metadata: Mapping[str, str]) -> dict[str, Any]:
    """The state in a record's metadata; ``CorruptSession`` if a value is not JSON."""
    try:
        return {key[len(STATE) :]: loads(value) for key, value in metadata.items() if key.startswith(STATE)}
    except msgspec.DecodeError as exc:
        raise CorruptSession(sid, f"a state value of the ADK record does not decode: {exc}") from exc


def named(metadata: Mapping[str, str], kind: str) -> Iterable[str]:
    return (key[len(kind) :] for key in metadata if key.startswith(kind))


def sid_of(app_name: str, user_id: str, session_id: str) -> uuid.UUID:
    return session_uuid(json.dumps(["adk", app_name, user_id, session_id]))


def app_record(app_name: str) -> uuid.UUID:
    return session_uuid(json.dumps(["adk-app", app_name]))


def user_record(app_name: str, user_id: str) -> uuid.UUID:
    return session_uuid(json.dumps(["adk-user", app_name, user_id]))


def name(app_name: str, user_id: str, session_id: str) -> str:
    return f"{session_id!r} (app {app_name!r}, user {user_id!r})"


def name_of(session: AdkSession) -> str:
    return name(session.app_name, session.user_id, session.id)


def check(**names: object) -> None:
    for what, value in names.items():
        if not isinstance(value, str) or not value:
            raise InvalidName(what, value)
