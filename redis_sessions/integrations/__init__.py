"""Drop-in sessions for agent frameworks, each an optional extra.

- ``redis_sessions.integrations.openai_agents.RedisAgentSession``: the OpenAI Agents SDK's
  ``Session`` (``pip install 'redis-sessions[openai-agents]'``).
- ``redis_sessions.integrations.langchain.RedisChatMessageHistory``: a LangChain
  ``BaseChatMessageHistory`` (``pip install 'redis-sessions[langchain]'``).

Importing ``redis_sessions`` or this package imports neither framework; importing one of the two
modules imports its framework, or raises ``ImportError`` naming the extra to install.

Both take the framework's free-string session id and store the conversation under
``session_uuid(id)``: a string that already is a UUID (canonical 36-character form, either case) is
that UUID; any other string is ``uuid.uuid5(SESSION_NAMESPACE, id)``, so every process finds the
same session for the same id.
"""

from ._common import SESSION_NAMESPACE, session_uuid

__all__ = ["SESSION_NAMESPACE", "session_uuid"]
