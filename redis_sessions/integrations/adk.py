"""``RedisSessionService``: Google ADK's ``BaseSessionService``, stored by redis-sessions.

    from google.adk.runners import Runner
    from redis_sessions import AsyncSessionStore
    from redis_sessions.integrations.adk import RedisSessionService

    store = AsyncSessionStore.from_url("redis://localhost:6379/0")
    runner = Runner(app_name="weather", agent=agent, session_service=RedisSessionService(store))

What is stored, all through the store's public API (so durable mode and Cluster work as for any
session, and every key of one record shares one Cluster slot):

- an ADK session is a store session under ``session_uuid(json([ "adk", app, user, id ]))``: its
  metadata holds the names, the creation time and the initial session state; each event is one
  ``AgentMessage`` (see ``to_message``) carrying the event's JSON and its session-scoped state
  delta, so the session's state is its initial state plus the deltas of its events, read in one
  consistent snapshot with the events themselves.
- ``app:`` state and the app's users are the metadata of one record per app, ``user:`` state and
  the user's session ids that of one record per (app, user); each update is one atomic
  ``set_metadata`` (last writer wins per key, as in ADK's own services). ``temp:`` state is never
  stored.

``append_event`` is one atomic append, idempotent for an equal event (a retry stores nothing) and
fenced: it passes the event count the ``Session`` was read at as ``expected_seq``, so a writer
whose copy is stale gets ``StaleSession`` (ADK's ``StaleSessionError`` and our
``ConflictError``) and writes nothing, instead of interleaving its turn with another worker's.
Shared ``app:``/``user:`` keys are written after the event; if that write fails, appending the
same event again completes it. A store with ``max_messages`` would trim events, and with them the
state they carry: give ADK a store without it. A store's ``ttl`` applies to the records too: shared
state not written for that long expires, as a session does.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Mapping
from typing import Any, Self

from .. import AsyncSessionStore, ConflictError, Session, SessionExists, SessionNotFound, SessionStore
from ._common import missing_framework

try:
    from google.adk.events.event import Event
    from google.adk.sessions import BaseSessionService
    from google.adk.sessions import Session as AdkSession
    from google.adk.sessions.base_session_service import GetSessionConfig, ListSessionsResponse
except ImportError as exc:  # tested with the import blocked
    raise missing_framework(exc, "Google ADK (google-adk)", "adk") from exc

from ._adk import (
    SESSION,
    USER,
    InvalidName,
    NoSuchSession,
    SessionAlreadyExists,
    StaleSession,
    WrongType,
    app_record,
    check,
    dumps,
    fields,
    loads,
    merged,
    name,
    name_of,
    named,
    session_of,
    sid_of,
    split_state,
    state_of,
    to_message,
    user_record,
)

__all__ = [
    "InvalidName",
    "NoSuchSession",
    "RedisSessionService",
    "SessionAlreadyExists",
    "StaleSession",
    "WrongType",
]

_ATTEMPTS = 3  # set-or-create a record, again if another process deletes it in between


class RedisSessionService(BaseSessionService):
    """ADK sessions in a ``SessionStore`` or an ``AsyncSessionStore``, shared by every worker.

    The service does not own the store: close the store yourself. A ``SessionStore``'s calls run
    in a worker thread, so the event loop never blocks.
    """

    def __init__(self, store: SessionStore | AsyncSessionStore) -> None:
        if not isinstance(store, SessionStore | AsyncSessionStore):
            raise WrongType("a SessionStore or an AsyncSessionStore", store)
        self.store = store

    @staticmethod
    def storage_id(app_name: str, user_id: str, session_id: str) -> uuid.UUID:
        """The store's id of an ADK session (for ``redis-sessions show`` or the store's own API)."""
        check(app_name=app_name, user_id=user_id, session_id=session_id)
        return sid_of(app_name, user_id, session_id)

    async def create_session(
        self,
        *,
        app_name: str,
        user_id: str,
        state: dict[str, Any] | None = None,
        session_id: str | None = None,
    ) -> AdkSession:
        """Create a session (``SessionAlreadyExists`` if the id is taken); its ``app:`` and
        ``user:`` keys go to the shared state, ``temp:`` keys nowhere."""
        check(app_name=app_name, user_id=user_id)
        session_id = (session_id.strip() if isinstance(session_id, str) else session_id) or str(uuid.uuid4())
        check(session_id=session_id)
        app, user, own = split_state(state)
        # Listed first, created second: a listing skips an id whose session is missing, so a
        # crash in between leaves nothing visible behind.
        await asyncio.gather(
            self._merge(app_record(app_name), {USER + user_id: "1"}, app_name),
            self._merge(user_record(app_name, user_id), {SESSION + session_id: "1"}, app_name, user_id),
        )
        sid, created = sid_of(app_name, user_id, session_id), time.time()
        metadata = {
            "integration": "adk",
            "external_id": session_id,
            "adk_app": app_name,
            "adk_user": user_id,
            "adk_created": repr(created),
            "adk_state": dumps(own),
        }
        try:
            await self._call("create", metadata=metadata, session_id=sid)
        except SessionExists as exc:
            raise SessionAlreadyExists(sid, name(app_name, user_id, session_id)) from exc
        await self._share(app_name, user_id, app, user)
        app_state, user_state = await self._shared(app_name, user_id)
        session = AdkSession(
            id=session_id,
            app_name=app_name,
            user_id=user_id,
            state=merged(app_state, user_state, loads(metadata["adk_state"])),
            last_update_time=created,
        )
        session._storage_update_marker = "0"
        return session

    async def get_session(
        self,
        *,
        app_name: str,
        user_id: str,
        session_id: str,
        config: GetSessionConfig | None = None,
    ) -> AdkSession | None:
        """The session, its state merged with the app's and the user's, its events filtered by
        ``config`` (``after_timestamp`` first, then the ``num_recent_events`` newest); ``None``
        if there is none."""
        check(app_name=app_name, user_id=user_id, session_id=session_id)
        stored, (app_state, user_state) = await asyncio.gather(
            self._call("load", sid_of(app_name, user_id, session_id)), self._shared(app_name, user_id)
        )
        if stored is None:
            return None
        return session_of(stored, app_state, user_state, config or GetSessionConfig())

    async def list_sessions(self, *, app_name: str, user_id: str | None = None) -> ListSessionsResponse:
        """The app's sessions (one user's, given ``user_id``) without events, with merged state,
        oldest update first. Reads each listed session whole: its state is in its events."""
        check(app_name=app_name)
        if user_id is not None:
            check(user_id=user_id)
        app, app_state = await self._record(app_record(app_name))
        users = sorted(named(app, USER)) if user_id is None else [user_id]
        found = await asyncio.gather(*(self._user_sessions(app_name, user, app_state) for user in users))
        sessions = [session for per_user in found for session in per_user]
        sessions.sort(key=lambda s: (s.last_update_time, s.user_id, s.id))
        return ListSessionsResponse(sessions=sessions)

    async def delete_session(self, *, app_name: str, user_id: str, session_id: str) -> None:
        """Delete the session and its events (the shared state stays); nothing if there is none."""
        check(app_name=app_name, user_id=user_id, session_id=session_id)
        await self._call("delete", sid_of(app_name, user_id, session_id))
        with contextlib.suppress(SessionNotFound):
            await self._call("set_metadata", user_record(app_name, user_id), {SESSION + session_id: None})

    async def get_user_state(self, *, app_name: str, user_id: str) -> dict[str, Any]:
        """The user's ``user:`` state, keys without the prefix (``{}`` if none)."""
        check(app_name=app_name, user_id=user_id)
        _, state = await self._record(user_record(app_name, user_id))
        return state

    async def append_event(self, session: AdkSession, event: Event) -> Event:
        """Append ``event`` atomically (see the module docstring) and apply it to ``session``."""
        if not isinstance(session, AdkSession):
            raise WrongType("a google.adk Session", session)
        if not isinstance(event, Event):
            raise WrongType("a google.adk Event", event)
        if event.partial:
            return event
        check(app_name=session.app_name, user_id=session.user_id, session_id=session.id)
        self._apply_temp_state(session, event)
        event = self._trim_temp_delta_state(event)
        sid, shown = sid_of(session.app_name, session.user_id, session.id), name_of(session)
        marker = session._storage_update_marker
        expected = int(marker) if marker is not None and marker.isdigit() else None
        try:
            seq: int = await self._call("append", sid, to_message(event), expected_seq=expected)
        except ConflictError as exc:
            raise StaleSession(sid, shown, exc.expected, exc.actual) from exc
        except SessionNotFound as exc:
            raise NoSuchSession(sid, shown) from exc
        app, user, _ = split_state(event.actions.state_delta if event.actions else None)
        await self._share(session.app_name, session.user_id, app, user)
        if (expected is not None and seq <= expected) or any(
            e.id == event.id and e == event for e in session.events
        ):
            return event  # an equal event stored before: a retry, already in the store and in session
        session._storage_update_marker = str(seq)
        session.last_update_time = event.timestamp
        return self._commit_event_to_session(session, event)

    async def close(self) -> None:
        """Nothing to close: the store is the caller's (``async with`` works as with ADK's
        database service, for code written against it)."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- the records -------------------------------------------------------------------------

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """``store.<method>(...)``, awaited, or in a worker thread for a ``SessionStore``."""
        bound = getattr(self.store, method)
        if isinstance(self.store, AsyncSessionStore):
            return await bound(*args, **kwargs)
        return await asyncio.to_thread(bound, *args, **kwargs)

    async def _record(self, sid: uuid.UUID) -> tuple[Mapping[str, str], dict[str, Any]]:
        """A record's metadata and the state in it (nothing for a record not written yet)."""
        stored: Session | None = await self._call("load", sid)
        metadata = {} if stored is None else stored.metadata
        return metadata, state_of(sid, metadata)

    async def _shared(self, app_name: str, user_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        (_, app), (_, user) = await asyncio.gather(
            self._record(app_record(app_name)), self._record(user_record(app_name, user_id))
        )
        return app, user

    async def _share(self, app_name: str, user_id: str, app: dict[str, Any], user: dict[str, Any]) -> None:
        """Merge ``app:`` and ``user:`` deltas into their records, each in one atomic write."""
        writes = []
        if app:
            writes.append(self._merge(app_record(app_name), fields(app), app_name))
        if user:
            writes.append(self._merge(user_record(app_name, user_id), fields(user), app_name, user_id))
        await asyncio.gather(*writes)

    async def _merge(
        self, sid: uuid.UUID, updates: Mapping[str, str | None], app: str, user: str = ""
    ) -> None:
        """``set_metadata`` on a record, creating the record first if there is none."""
        for attempt in range(_ATTEMPTS):
            try:
                await self._call("set_metadata", sid, updates)
                return
            except SessionNotFound:
                if attempt == _ATTEMPTS - 1:
                    raise
            header = {"integration": "adk", "adk_record": "user" if user else "app", "adk_app": app}
            if user:
                header["adk_user"] = user
            with contextlib.suppress(SessionExists):  # another process created it first: fine
                await self._call("create", metadata=header, session_id=sid)

    async def _user_sessions(
        self, app_name: str, user_id: str, app_state: dict[str, Any]
    ) -> list[AdkSession]:
        record, user_state = await self._record(user_record(app_name, user_id))
        ids = sorted(named(record, SESSION))
        stored = await asyncio.gather(*(self._call("load", sid_of(app_name, user_id, i)) for i in ids))
        none = GetSessionConfig(num_recent_events=0)
        return [session_of(s, app_state, user_state, none) for s in stored if s is not None]
