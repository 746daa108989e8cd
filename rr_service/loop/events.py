"""What the loop's program yields (actions) and what the daemon answers (events), and the
constants both sides share. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from rr_service.core.plan import Plan

BACKOFF_FIRST = 0.25
# A down datastore costs one connect attempt per try; coming back fast matters more: with
# 1 s (+20 % jitter) a change made the moment it answers again is applied within 2 s.
BACKOFF_CAP = 1.0
BIRD_RETRY = 5.0  # seconds between `configure` attempts while BIRD's socket does not answer
BIRD_CHECK = 5.0  # seconds between checks that BIRD still runs what it accepted (restarted?)
TICK = 1.0  # upper bound on how long a pass waits; keeps signals and the watchdog prompt

# How the last apply ended. READY follows IN_PLACE, HELD and BLOCKED; FAILED (a render
# failure, a refusal, a write error) sends no READY: a start that never gets a config in place
# then fails visibly at systemd's start timeout instead of looking healthy.
IN_PLACE, HELD, BLOCKED, FAILED = "in place", "held", "blocked", "failed"

# Per-target outcomes of an Apply (Applied.outcomes).
APPLIED, TAKEN_OVER, UNCHANGED, WRITTEN_BIRD_DOWN, REJECTED, WRITE_ERROR = (
    "applied", "taken over", "unchanged", "written, BIRD down", "rejected", "write error")


# -- actions (yielded) and the events that answer them ---------------------------------------

@dataclass(frozen=True)
class Pass:
    """A pass begins. Answer: PassStarted."""


@dataclass(frozen=True)
class ReadSnapshot:
    """Read the whole data set and follow its changes. Answer: SnapshotRead or Failed."""


@dataclass(frozen=True)
class CheckBird:
    """Does every BIRD still run what it accepted? Answer: BirdChecked."""


@dataclass(frozen=True)
class Compute:
    """Run the pipeline over the data. Answer: Computed or RenderFailed."""


@dataclass(frozen=True)
class Apply:
    """Put these configs (by target) in front of BIRD. Answer: Applied."""

    configs: dict


@dataclass(frozen=True)
class Wait:
    """Wait up to `timeout` s for changes. Answer: Changes or Failed."""

    timeout: float


@dataclass(frozen=True)
class Sleep:
    """Wait `seconds` (or until a signal). Answer: anything."""

    seconds: float


@dataclass(frozen=True)
class Notify:
    """STATUS= (and READY=1 when `ready`). No answer needed."""

    status: str
    ready: bool


@dataclass(frozen=True)
class Log:
    level: str  # debug | info | warning | error
    text: str


@dataclass(frozen=True)
class PublishHeld:
    """A render is held back: tell `calico-rr accept` (state dir)."""

    verdict: object


@dataclass(frozen=True)
class ClearHeld:
    pass


@dataclass(frozen=True)
class PassStarted:
    now: float  # monotonic seconds
    reloaded: bool = False  # SIGHUP: new settings are in place


@dataclass(frozen=True)
class SnapshotRead:
    now: float
    position: str  # `revision 1234`, for the status line
    keys: int = 0
    describe: str = ""  # which store answered, for the log


@dataclass(frozen=True)
class Failed:
    """The datastore failed: unreachable (resync=False) or its change stream broke (True)."""

    now: float
    wall: float  # time.time(), for "unreachable since HH:MM:SS"
    reason: str
    resync: bool = False


@dataclass(frozen=True)
class Changes:
    now: float
    count: int  # changes that changed something
    position: str = ""


@dataclass(frozen=True)
class BirdChecked:
    drifted: tuple = ()  # targets that no longer run what they accepted


@dataclass(frozen=True)
class Computed:
    now: float
    plan: Plan
    configs: dict  # target -> text
    names: dict  # target -> frozenset of the protocol names the plan gives it
    disk_names: dict  # target -> frozenset of the names in the file on disk now
    accepted: bool = False  # `calico-rr accept` was asked for
    rejected: tuple = ()  # core.values.Rejected of the data set


@dataclass(frozen=True)
class RenderFailed:
    message: str


@dataclass(frozen=True)
class Outcome:
    kind: str  # APPLIED, ... WRITE_ERROR
    detail: str = ""  # BIRD's refusal or the write error
    path: str = ""  # the config file, for messages


@dataclass(frozen=True)
class Applied:
    now: float
    wall: float
    outcomes: dict  # target -> Outcome
