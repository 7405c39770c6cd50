"""The docs' example of streamed replies (docs/multi-agent.md) runs, as written, against a real server."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[2] / "docs" / "multi-agent.md"


@pytest.mark.real
def test_the_readme_example_runs(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    section = PAGE.read_text("utf-8").split("## Streamed replies", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None
    monkeypatch.setenv("REDIS_URL", redis_url)
    exec(compile(code.group(1), "docs/multi-agent.md", "exec"), {"__name__": "readme"})
