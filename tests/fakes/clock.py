"""A clock that moves only when told."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class FrozenClock:
    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta | float) -> datetime:
        self._now += delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        return self._now


class ShiftedClock:
    """Real time, moved forward on demand: the demo keeps running at its own pace while a test
    skips a veto window or a reminder's wait (`advance`) instead of sleeping through it."""

    def __init__(self) -> None:
        self._offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def advance(self, delta: timedelta | float) -> datetime:
        self._offset += delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        return self.now()
