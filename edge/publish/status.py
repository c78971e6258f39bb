"""What the station's retained status says: the state the runtime set, ``degraded`` over it, and a lease.

Two ways a retained status used to lie, and what this module does about them:

- **The broker refuses the station's results** (ACL): the runtime still says ``online``. Here an open
  refusal burst (:class:`~edge.publish.refusals.RefusalTracker`) turns ``online`` into ``degraded``,
  with the reasons in ``problems``, until the broker accepts that topic again.
- **The station died unseen**: a station killed while the broker was down never reconnects to
  register its Will, and a broker with persistence restores the retained ``online`` forever. Here
  every *live* state (starting, building-engine, online, degraded) is a lease of ``lease_s``
  seconds: the payload says ``valid_until`` (any protocol) and under MQTT 5 the message carries that
  Message Expiry, so the broker itself forgets it. The publisher re-publishes it every third of the
  lease (heartbeat). ``stopped`` and ``offline`` are final and never expire.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from edge.publish.refusals import RefusalTracker
from shared.messages import StationState

LIVE_STATES = frozenset(
    {StationState.STARTING, StationState.BUILDING_ENGINE, StationState.ONLINE, StationState.DEGRADED}
)
HEARTBEATS_PER_LEASE = 3


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Shown:
    """The status as it goes out now: state, since when, problems, and the lease (None: final state or off)."""

    state: StationState
    since: datetime
    problems: list[str]
    heartbeat_at: datetime | None
    valid_until: datetime | None
    expiry_s: int | None


class StatusBoard:
    """The runtime's state plus refusals and the lease; thread-safe."""

    def __init__(self, lease_s: int | None, summary_interval_s: float) -> None:
        self.lease_s = lease_s
        self.refusals = RefusalTracker(summary_interval_s)
        self._state = StationState.STARTING
        self._since = _now()
        self._next_heartbeat: float | None = None
        self._lock = threading.Lock()

    @property
    def state(self) -> StationState:
        """The state the runtime set last (``degraded`` never: that is shown over ``online``)."""
        return self._state

    def set(self, state: StationState) -> None:
        """The runtime's new state; it begins now."""
        with self._lock:
            self._state, self._since = state, _now()

    def shown(self) -> Shown:
        """What the retained status says now."""
        with self._lock:
            state, since = self._state, self._since
        problems = self.refusals.problems()
        burst_since = self.refusals.since()
        if state == StationState.ONLINE and problems and burst_since is not None:
            state, since = StationState.DEGRADED, max(since, datetime.fromtimestamp(burst_since, timezone.utc))
        if self.lease_s is None or state not in LIVE_STATES:
            return Shown(state, since, problems, None, None, None)
        now = _now()
        return Shown(state, since, problems, now, now + timedelta(seconds=self.lease_s), self.lease_s)

    def published(self) -> None:
        """A status went out: the next heartbeat is due a third of a lease from now."""
        if self.lease_s is not None:
            self._next_heartbeat = time.monotonic() + self.lease_s / HEARTBEATS_PER_LEASE

    def heartbeat_due(self) -> bool:
        """True when a live state's lease needs renewing."""
        due = self._next_heartbeat
        return due is not None and time.monotonic() >= due and self._state in LIVE_STATES
