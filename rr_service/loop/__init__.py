"""The daemon's loop as a pure state machine (see program.py): the daemon performs what it
yields and sends back what happened."""

from rr_service.loop.events import *  # noqa: F401,F403  (the actions and events)
from rr_service.loop.program import program, report_problems  # noqa: F401
from rr_service.loop.status import Settings, State, status_line  # noqa: F401
