"""The lab's restart detector: the integration and fault tests trust it to tell a session that
survived a change from one that restarted, so it must neither flag clock jitter nor miss a
restart."""

from tests.lab.bird import Protocol, same_since


def _p(since, state="up", info="Established"):
    return Protocol("Client_192_0_2_21", "BGP", "---", state, since, info)


def test_bird1_seconds_jitter_is_the_same_instant():
    assert same_since("11:58:26", "11:58:27")
    assert same_since("11:58:26", "11:58:25")


def test_bird2_millisecond_jitter_is_the_same_instant():
    # Seen in CI: BIRD 2.0.12 showed one establishment as .621, then .622.
    assert same_since("11:58:26.621", "11:58:26.622")
    assert same_since("2026-11-25 11:58:26.621", "2026-11-25 11:58:26.622")


def test_a_restart_is_not_the_same_instant():
    assert not same_since("11:58:26", "11:58:31")
    assert not same_since("11:58:26.621", "11:58:28.100")


def test_midnight_wrap_and_garbage():
    assert same_since("23:59:59.900", "00:00:00.100")
    assert not same_since("11:58:26", "yesterday")


def test_same_run_needs_the_session_established_now():
    before = _p("11:58:26.621")
    assert _p("11:58:26.622").same_run_as(before)
    assert not _p("11:58:26.621", state="start", info="Connect").same_run_as(before)
    assert not _p("11:58:33.000").same_run_as(before)
