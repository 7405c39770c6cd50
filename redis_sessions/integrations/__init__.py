"""Drop-in sessions for agent frameworks, each an optional extra.

- ``redis_sessions.integrations.openai_agents.RedisAgentSession``: the OpenAI Agents SDK's
  ``Session`` (``pip install 'redis-sessions[openai-agents]'``).
- ``redis_sessions.integrations.langchain.RedisChatMessageHistory``: a LangChain
  ``BaseChatMessageHistory`` (``pip install 'redis-sessions[langchain]'``).
- ``redis_sessions.integrations.adk.RedisSessionService``: Google ADK's ``BaseSessionService``
  (``pip install 'redis-sessions[adk]'``); its ids are scoped by app and user (see that module).

Importing ``redis_sessions`` or this package imports no framework; importing one of the
modules imports its framework, or raises ``ImportError`` naming the extra to install.

The first two take the framework's free-string session id and store the conversation under
``session_uuid(id)``: a string that already is a UUID (canonical 36-character form, either case) is
that UUID; any other string is ``uuid.uuid5(SESSION_NAMESPACE, id)``, so every process finds the
same session for the same id.
"""

from ._common import SESSION_NAMESPACE, session_uuid

__all__ = ["SESSION_NAMESPACE", "session_uuid"]
