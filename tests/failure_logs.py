"""For autouse fixtures that print the daemons' logs into the report of a failed test."""

from __future__ import annotations


def failed_fixture(request, name: str):
    """The test's fixture `name` when the test's call failed and it uses that fixture, else
    None (the conftest hooks record each phase's report as request.node.rep_<phase>)."""
    rep = getattr(request.node, "rep_call", None)
    if rep is None or not rep.failed or name not in request.fixturenames:
        return None
    return request.getfixturevalue(name)
