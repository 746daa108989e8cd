"""The drop guard's decisions, on a clock the test controls."""

from rr_service.core.safety import DropGuard, session_names

RUNNING = frozenset(f"Client_192_0_2_{i}" for i in range(10))


def test_session_names_from_configs():
    text = "protocol device {\n}\nprotocol bgp Mesh_192_0_2_11 from bgp_template {\n}\nprotocol bgp Client_2001_db8__21 from x {\n}\n"
    assert session_names([text, "# protocol bgp Fake\n"]) == {"Mesh_192_0_2_11", "Client_2001_db8__21"}


def test_small_changes_apply():
    guard = DropGuard(0.5, 300)
    verdict = guard.check(RUNNING, frozenset(list(RUNNING)[:5]), now=0)
    assert verdict.apply and verdict.dropped == 5 and verdict.reason is None


def test_nothing_running_never_holds():
    assert DropGuard(0.5, 300).check(frozenset(), frozenset(), now=0).apply


def test_mass_drop_is_held_until_the_hold_time():
    guard = DropGuard(0.5, 300)
    first = guard.check(RUNNING, frozenset(), now=1000)
    assert not first.apply and "drop 10 of 10" in first.reason and "calico-rr accept" in first.reason
    # later changes do not restart the clock
    assert not guard.check(RUNNING, frozenset({"Client_192_0_2_1"}), now=1200).apply
    late = guard.check(RUNNING, frozenset(), now=1300)
    assert late.apply and late.held_for == 300 and "etcd still says so" in late.reason
    assert guard.held_since is None


def test_operator_accepts():
    guard = DropGuard(0.5, 300)
    assert not guard.check(RUNNING, frozenset(), now=0).apply
    verdict = guard.check(RUNNING, frozenset(), now=5, accepted=True)
    assert verdict.apply and verdict.reason == "accepted by the operator"


def test_recovered_data_ends_the_hold():
    guard = DropGuard(0.5, 300)
    assert not guard.check(RUNNING, frozenset(), now=0).apply
    verdict = guard.check(RUNNING, RUNNING, now=10)
    assert verdict.apply and verdict.reason == "the data recovered"


def test_share_one_never_holds():
    assert DropGuard(1.0, 300).check(RUNNING, frozenset(), now=0).apply


def test_a_single_dropped_session_is_never_held():
    # The only client of a one-node cluster removed (1 of 1 > 50 %): applied at once.
    guard = DropGuard(0.5, 300)
    verdict = guard.check(frozenset({"Client_192_0_2_21"}), frozenset(), now=0)
    assert verdict.apply and verdict.dropped == 1 and verdict.reason is None
    # ... one of two, one of three as well; two of two is a wipe and is held.
    assert guard.check(frozenset({"Client_192_0_2_21", "Mesh_192_0_2_11"}), frozenset({"Mesh_192_0_2_11"}), now=0).apply
    held = guard.check(frozenset({"Client_192_0_2_21", "Mesh_192_0_2_11"}), frozenset(), now=0)
    assert not held.apply and "drop 2 of 2" in held.reason


def test_one_drop_after_a_hold_ends_it():
    guard = DropGuard(0.5, 300)
    assert not guard.check(RUNNING, frozenset(), now=0).apply
    verdict = guard.check(RUNNING, RUNNING - {"Client_192_0_2_3"}, now=10)
    assert verdict.apply and verdict.reason == "the data recovered" and guard.held_since is None
