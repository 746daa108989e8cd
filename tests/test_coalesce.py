"""The burst detector that decides whether the daemon gathers changes before a reload."""

from rr_service.core.coalesce import BURST_KEYS, BurstDetector


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_single_changes_never_make_a_burst():
    clock = Clock()
    d = BurstDetector(clock)
    for _ in range(500):            # one key every 10 ms: 100 keys a second, not more
        assert not d.note(1)
        clock.t += 0.0101


def test_a_bulk_transaction_is_a_burst_and_it_ends():
    clock = Clock()
    d = BurstDetector(clock)
    assert d.note(128)              # one etcd transaction of 128 puts
    clock.t += 0.5
    assert d.note(0)                # still within the window
    clock.t += 0.6
    assert not d.note(0)            # a quiet second: over
    assert not d.note(3)


def test_many_small_batches_add_up():
    clock = Clock()
    d = BurstDetector(clock)
    seen = [d.note(5) for _ in range(BURST_KEYS // 5 + 1)]
    assert seen[-1] and not seen[0]
