"""``_times``: the meta hash's one form of a time, written and read back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from redis_sessions._times import EPOCH, stored_micros, stored_time


@given(
    st.datetimes(min_value=datetime(1, 1, 2), timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5))]))
)
def test_a_time_written_reads_back_as_the_same_instant(moment: datetime) -> None:
    assert stored_time(stored_micros(moment).encode()) == moment


def test_a_naive_time_is_utc_and_none_is_left_to_the_script() -> None:
    assert stored_micros(datetime(1970, 1, 1, 0, 0, 1)) == "1000000"
    assert stored_micros(None) == ""
    assert stored_time(None) is None
    assert stored_time(b"-1") == EPOCH - timedelta(microseconds=1)
