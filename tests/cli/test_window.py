"""``show --tokens``, ``context ID --max-tokens N`` and ``fork ID [--at SEQ]`` (issue 20)."""

from __future__ import annotations

import json
import uuid

from redis_sessions import AgentMessage, SessionStore
from tests.cli.conftest import Cli, seed


def test_show_tokens_gives_each_count_and_the_total(cli: Cli, store: SessionStore) -> None:
    (sid,) = seed(store, 1, messages=3)
    store.summarize(sid, "hello", through_seq=1)
    out = cli("show", str(sid), "--tokens").stdout
    total = store.info(sid).tokens  # type: ignore[union-attr]
    assert f"tokens: {total:,} (summary through seq 1)" in out
    assert "#1 user  summarised" in out
    window = store.context(sid, 10_000)
    assert f"#3 user  {window.counts[-1]} tokens" in out


def test_context_prints_what_fits(cli: Cli, store: SessionStore) -> None:
    sid = store.create()
    store.extend(sid, [AgentMessage.user(f"message {n} " + "x" * 40) for n in range(6)])
    window = store.context(sid, 40)
    result = cli("context", str(sid), "--max-tokens", "40")
    assert result.exit_code == 0
    assert [line.split()[0] for line in result.stdout.splitlines() if line.startswith("#")] == [
        f"#{window.first_seq + n}" for n in range(len(window.messages))
    ]
    assert f"{window.tokens:,} tokens: {len(window.messages)} of 6 message(s)" in result.stderr
    data = json.loads(cli("context", str(sid), "--max-tokens", "40", "--json").stdout)
    assert (data["tokens"], data["first_seq"]) == (window.tokens, window.first_seq)


def test_fork_prints_the_new_id(cli: Cli, store: SessionStore) -> None:
    (sid,) = seed(store, 1, messages=4)
    new = uuid.UUID(cli("fork", str(sid), "--at", "2").stdout.strip())
    assert [m.text for m in store.messages(new)] == ["hello 0.0", "hello 0.1"]
    chosen = str(uuid.uuid4())
    assert cli("fork", str(sid), "--new-id", chosen).stdout.strip() == chosen
    assert cli("fork", str(sid), "--new-id", chosen).stdout.strip() == chosen
    failed = cli("fork", str(sid), "--at", "9")
    assert failed.exit_code == 1
    assert "past the session" in failed.stderr
