"""Times in the SQL views are fixed-width UTC text (``stamp``). A rebuild converts the
text stored in events directly (``stamp_text``), without parsing where only the zone's
spelling differs: whatever the spelling, the result must be what parsing and ``stamp``
give, so rows written by a rebuild equal rows written one command at a time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import AwareDatetime, TypeAdapter

from keyledger.adapters.driven.sql_views import stamp, stamp_text

ZONES = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))])
MOMENTS = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(9998, 12, 30), timezones=ZONES
) | st.datetimes(min_value=datetime(1970, 1, 2), timezones=ZONES).map(lambda m: m.replace(microsecond=0))
AS_STORED = TypeAdapter(AwareDatetime)


@given(MOMENTS)
def test_every_spelling_of_a_time_gives_the_text_stamp_writes(moment: datetime) -> None:
    expected = stamp(moment)
    spellings = {
        AS_STORED.dump_python(moment, mode="json"),  # how an event stores it
        AS_STORED.dump_python(moment.astimezone(UTC), mode="json"),
        moment.isoformat(),
        moment.isoformat(timespec="microseconds"),
        moment.astimezone(UTC).isoformat(sep=" ").replace("+00:00", "Z"),
    }
    for text in spellings:
        assert stamp_text(text) == expected, text


def test_an_events_time_keeps_its_digits_and_gets_the_stamped_zone() -> None:
    assert stamp_text("2026-11-28T21:30:00.123456Z") == "2026-11-28T21:30:00.123456+00:00"
    assert stamp_text("2026-11-28T21:30:00Z") == "2026-11-28T21:30:00.000000+00:00"
    assert stamp_text("2026-11-28T23:30:00.000001+02:00") == "2026-11-28T21:30:00.000001+00:00"
    assert stamp_text("2026-11-28 21:30:00.123456Z") == "2026-11-28T21:30:00.123456+00:00"


def test_a_time_without_a_zone_is_refused() -> None:
    """A stored time must say its zone (events are written in UTC); guessing the local
    one would put the entry at another time."""
    with pytest.raises(ValueError, match="no time zone"):
        stamp_text("2026-11-28T21:30:00.123456")


@given(MOMENTS, MOMENTS)
def test_converted_times_sort_as_the_times_do(first: datetime, second: datetime) -> None:
    a = stamp_text(AS_STORED.dump_python(first, mode="json"))
    b = stamp_text(AS_STORED.dump_python(second, mode="json"))
    assert (a < b) == (first < second)
    assert (a == b) == (first == second)
