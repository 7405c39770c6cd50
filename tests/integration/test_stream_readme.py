"""The README's example of streamed replies runs, as written, against a real server."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.real
def test_the_readme_example_runs(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    section = README.read_text("utf-8").split("## Streamed replies", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None
    monkeypatch.setenv("REDIS_URL", redis_url)
    exec(compile(code.group(1), "README.md", "exec"), {"__name__": "readme"})
