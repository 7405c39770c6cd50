"""The suite's cases against an earlier revision of the package itself (issue 15), in the same run.

- ``cli_case``: ``redis-sessions ls`` / ``stats --json`` over many sessions, each a real process
  (interpreter start-up included), this tree's package against ``--before``'s (``git archive`` of
  ``redis_sessions/`` into a temporary directory, put first on ``PYTHONPATH``).
- ``script_times``: ``append.lua``'s server time per call, this tree's against ``--before``'s, a no-op
  script with the same keys and arguments and raw ``RPUSH`` (``bench_append_script``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis
from _harness import Case, Runner, Sample, sample
from bench_append_script import MINIMAL, NOOP, at_revision, run_variants, summary, this_tree
from bench_cli import fill

from redis_sessions import SessionStore

ROOT = Path(__file__).resolve().parent.parent
NOW = "redis-sessions"


def before_name(rev: str) -> str:
    return f"redis-sessions @ {rev}"


def archive(rev: str) -> tempfile.TemporaryDirectory[str]:
    """A temporary directory holding ``redis_sessions/`` as it was at ``rev``."""
    where = tempfile.TemporaryDirectory(prefix="rs-before-")
    tar = subprocess.run(["git", "archive", rev, "redis_sessions"], cwd=ROOT, check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", where.name], input=tar.stdout, check=True)
    # Both trees byte-compiled, as installed packages are: under PYTHONDONTWRITEBYTECODE every run
    # of the command would compile each module from its source again (~60 ms of its start-up).
    packages = [str(Path(where.name) / "redis_sessions"), str(ROOT / "redis_sessions")]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *packages], check=True)
    return where


class Listing:
    """``sessions`` sessions of 4 messages under a prefix of their own, for the ``ls``/``stats`` cases."""

    def __init__(self, url: str, prefix: str, sessions: int) -> None:
        self.url, self.prefix, self.sessions = url, f"{prefix}:ls-{uuid.uuid4().hex[:6]}", sessions
        with redis.Redis.from_url(url) as client:
            fill(SessionStore(client, prefix=self.prefix), client, sessions, 4)

    def case(self, op: str, command: tuple[str, ...], source: Path, rev: str) -> Case:
        def runner(where: Path | None) -> Runner:
            return lambda r, n: self._run(command, where)

        before = before_name(rev)
        systems = {before: runner(source), NOW: runner(None)}
        return Case(op, "sessions", self.sessions, systems, {before: None, NOW: before}, warmup=False)

    def _run(self, command: tuple[str, ...], source: Path | None) -> Sample:
        env = dict(os.environ)
        if source is not None:
            env["PYTHONPATH"] = os.pathsep.join([str(source), env.get("PYTHONPATH", "")])
        # -P: not the working directory first on sys.path (from the repository's root, this tree's
        # package would be imported whatever PYTHONPATH names)
        args = [sys.executable, "-P", "-m", "redis_sessions", "--url", self.url, "--prefix", self.prefix]
        began = time.perf_counter_ns()
        done = subprocess.run([*args, *command], capture_output=True, env=env, check=False, timeout=600)
        wall = time.perf_counter_ns() - began
        if done.returncode != 0:
            raise RuntimeError(f"{command} failed: {done.stderr.decode()}")
        lines = done.stdout.count(b"\n")
        assert command[0] != "ls" or lines == self.sessions + 1, f"ls printed {lines} lines"
        return sample([wall], wall, 0, self.sessions)

    def cleanup(self) -> None:
        with redis.Redis.from_url(self.url) as client:
            keys = list(client.scan_iter(match=f"{self.prefix}:*", count=10_000))
            for i in range(0, len(keys), 10_000):
                client.unlink(*keys[i : i + 10_000])


def script_times(client: redis.Redis, rev: str, rounds: int, ops: int) -> list[dict[str, Any]]:
    """``append.lua``'s server µs per call on a plain session, this tree's and ``rev``'s."""
    variants = {"this tree": this_tree(), f"at {rev}": at_revision(rev), "minimal idempotent": MINIMAL}
    variants["no-op script"] = NOOP
    return summary(run_variants(client, variants, rounds, ops, ("plain",)), ops)
