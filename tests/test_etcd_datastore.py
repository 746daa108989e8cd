"""The etcd adapter against a real, throw-away etcd server (no mocks).

Each etcd runs on 127.0.0.1 with random ports and a temp data dir (see
etcdproc.py). Writes that the adapter must *observe* are made with etcdctl, so
the test does not only check the adapter against itself.
"""

from __future__ import annotations

import threading
import time

import pytest

from tests import prereq
from tests.etcdproc import EtcdProc, TLSFiles, free_port, hanging_endpoints, need_etcd, throwaway_etcd, wait_until

prereq.import_or_missing("etcd3", "python3-etcd3 is not installed")

from rr_service.sources.base import DatastoreUnavailable, ResyncNeeded  # noqa: E402
from rr_service.sources.etcd.client import EtcdConfig, EtcdDatastore  # noqa: E402
from rr_service.sources.etcd.watch import KeyEvent  # noqa: E402


def Change(key, value, revision, created=None):
    """The event of a put (created: the key's create_revision, by default this put's: a new
    key) or a delete."""
    if value is not None and created is None:
        created = revision
    return KeyEvent(key, value, revision, created)

# A real etcd in every test (the pure settings checks are in test_etcd_config.py).
pytestmark = pytest.mark.integration

PREFIX = "/calico/bgp/v1"
TIMEOUT = 2.0


@pytest.fixture(scope="module")
def etcd():
    """One etcd shared by the tests that do not stop it; each test uses its own prefix."""
    with throwaway_etcd() as server:
        yield server


@pytest.fixture
def own_etcd():
    """An etcd this test may stop, pause or reconfigure."""
    need_etcd()
    server = EtcdProc()
    try:
        yield server.start()
    finally:
        server.close()


@pytest.fixture
def prefix(request):
    return f"/t/{request.node.name}{PREFIX}"


def open_store(server, prefix=PREFIX, **settings):
    settings.setdefault("timeout", TIMEOUT)
    settings.setdefault("endpoints", (server.url,))
    return EtcdDatastore(EtcdConfig(**settings), prefix)


@pytest.fixture
def store(etcd, prefix):
    ds = open_store(etcd, prefix)
    yield ds
    ds.close()


def collect(ds, count, timeout=5.0):
    """Changes from next_changes() until `count` arrived; fails after timeout."""
    changes = []
    deadline = time.monotonic() + timeout
    while len(changes) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"only {len(changes)} of {count} changes after {timeout} s: {changes}"
        changes += ds.next_changes(left)
    return changes


def raises_within(exc_types, seconds, fn):
    """Call fn until it raises one of exc_types; return the error; fail after seconds."""
    start = time.monotonic()
    with pytest.raises(exc_types) as caught:
        while time.monotonic() - start < seconds:
            fn()
    elapsed = time.monotonic() - start
    assert elapsed < seconds, f"took {elapsed:.1f} s"
    return caught.value


def watch_threads():
    return [t for t in threading.enumerate()
            if t.is_alive() and t.name.startswith(("etcd-watch", "etcd3_watch"))]


# -- snapshot and simple calls ------------------------------------------------------


def test_snapshot_of_an_empty_prefix(store):
    data, revision = store.snapshot()
    assert data == {}
    assert revision > 0


def test_snapshot_has_relative_keys_and_ignores_neighbours(store, etcd, prefix):
    etcd.ctl("put", f"{prefix}/rr_v4/192.0.2.10", '{"ip":"192.0.2.10"}')
    etcd.ctl("put", f"{prefix}/global/as_num", "64512")
    etcd.ctl("put", f"{prefix}x/rr_v4/192.0.2.99", "sibling prefix")
    etcd.ctl("put", prefix, "the prefix itself is no key under it")
    etcd.ctl("put", "/t/elsewhere", "x")

    data, revision = store.snapshot()

    assert data == {"rr_v4/192.0.2.10": b'{"ip":"192.0.2.10"}', "global/as_num": b"64512"}
    assert revision == etcd.revision()


def test_trailing_slash_in_prefix_is_the_same_prefix(etcd, prefix):
    etcd.ctl("put", f"{prefix}/a", "1")
    with_slash = open_store(etcd, prefix + "/")
    try:
        assert with_slash.snapshot()[0] == {"a": b"1"}
    finally:
        with_slash.close()


def test_get_put_delete(store, etcd, prefix):
    store.put("rr_v4/192.0.2.10", b"value")
    assert etcd.ctl("get", f"{prefix}/rr_v4/192.0.2.10", "--print-value-only").stdout == "value\n"
    assert store.get("rr_v4/192.0.2.10") == b"value"
    assert store.get("rr_v4/192.0.2.11") is None
    assert store.delete("rr_v4/192.0.2.10") is True
    assert store.delete("rr_v4/192.0.2.10") is False
    with pytest.raises(ValueError):
        store.put("/absolute", b"x")


def test_two_prefixes_are_independent(etcd, prefix):
    bgp, v3 = open_store(etcd, f"{prefix}/bgp"), open_store(etcd, f"{prefix}/resources/v3")
    try:
        bgp.put("k", b"bgp")
        v3.put("k", b"v3")
        assert bgp.snapshot()[0] == {"k": b"bgp"}
        assert v3.snapshot()[0] == {"k": b"v3"}
    finally:
        bgp.close()
        v3.close()


class _BetweenPages:
    """Wraps a client's KV stub to run `action` once, right after the first page of a Range."""

    def __init__(self, stub, action):
        self.stub, self.action, self.pages = stub, action, 0

    def Range(self, *args, **kwargs):
        response = self.stub.Range(*args, **kwargs)
        self.pages += 1
        if self.pages == 1:
            self.action()
        return response


def _interleave(store, action):
    client = store._ensure_client()
    client.kvstub = _BetweenPages(client.kvstub, action)
    return client.kvstub


def test_snapshot_in_pages_is_the_view_of_one_revision(store, etcd, prefix):
    for i in range(10):
        etcd.ctl("put", f"{prefix}/host/n{i}/ip_addr_v4", f"192.0.2.{i + 1}")
    whole, revision = store.snapshot(page_keys=None)
    assert len(whole) == 10

    def meanwhile():  # after the first page: a key the later pages would show, one they would miss
        etcd.ctl("put", f"{prefix}/host/n99/ip_addr_v4", "192.0.2.99")
        etcd.ctl("del", f"{prefix}/host/n9/ip_addr_v4")

    stub = _interleave(store, meanwhile)
    paged, paged_revision = store.snapshot(page_keys=3)

    assert stub.pages == 4
    assert (paged, paged_revision) == (whole, revision)
    later, _ = store.snapshot(page_keys=3)
    assert "host/n99/ip_addr_v4" in later and "host/n9/ip_addr_v4" not in later


def test_snapshot_reads_again_when_etcd_compacts_midway(store, etcd, prefix):
    for i in range(6):
        etcd.ctl("put", f"{prefix}/host/n{i}/ip_addr_v4", f"192.0.2.{i + 1}")

    def meanwhile():  # the first page's revision is history now
        etcd.ctl("put", f"{prefix}/host/n99/ip_addr_v4", "192.0.2.99")
        etcd.ctl("compact", str(etcd.revision()))

    _interleave(store, meanwhile)
    data, revision = store.snapshot(page_keys=4)

    assert len(data) == 7 and data["host/n99/ip_addr_v4"] == b"192.0.2.99"
    assert revision == etcd.revision()


# -- watch ------------------------------------------------------------------------


def test_watch_sees_put_and_delete_with_their_revisions(store, etcd, prefix):
    _, revision = store.snapshot()
    store.start_watch(revision + 1)
    etcd.ctl("put", f"{prefix}x/neighbour", "not ours")  # revision + 1, invisible
    etcd.ctl("put", f"{prefix}/rr_v4/192.0.2.10", "v")  # revision + 2
    etcd.ctl("del", f"{prefix}/rr_v4/192.0.2.10")  # revision + 3

    assert collect(store, 2) == [
        Change("rr_v4/192.0.2.10", b"v", revision + 2),
        Change("rr_v4/192.0.2.10", None, revision + 3),
    ]


def test_watch_from_an_old_revision_replays_history(store, etcd, prefix):
    _, revision = store.snapshot()
    etcd.ctl("put", f"{prefix}/a", "1")
    store.start_watch(revision + 1)
    assert collect(store, 1) == [Change("a", b"1", revision + 1)]


def test_a_transaction_of_100_puts_is_one_batch(store, etcd, prefix):
    _, revision = store.snapshot()
    store.start_watch(revision + 1)
    puts = "\n".join(f"put {prefix}/node/n{i:03} v{i}" for i in range(100))
    etcd.ctl("txn", stdin=f"\n{puts}\n\n\n")

    batch = store.next_changes(5.0)

    assert len(batch) == 100
    assert {c.revision for c in batch} == {revision + 1}
    assert batch[0] == Change("node/n000", b"v0", revision + 1)


def test_changes_already_queued_fold_into_one_batch(store, prefix):
    _, revision = store.snapshot()
    store.start_watch(revision + 1)
    for i in range(5):
        store.put(f"k{i}", b"v")
    # White-box wait: the five responses sit in the queue before we read it.
    wait_until(lambda: store._watch.events.qsize() >= 5, 5.0, "5 watch responses")

    assert [c.key for c in store.next_changes(1.0)] == [f"k{i}" for i in range(5)]


def test_next_changes_returns_nothing_on_timeout(store):
    _, revision = store.snapshot()
    store.start_watch(revision + 1)
    start = time.monotonic()
    assert store.next_changes(0.3) == []
    assert 0.25 <= time.monotonic() - start < 2.0


def test_next_changes_without_a_watch_asks_for_a_resync(store):
    with pytest.raises(ResyncNeeded):
        store.next_changes(0.1)


def test_compacted_revision_needs_a_resync_and_resync_works(store, etcd, prefix):
    _, revision = store.snapshot()
    for i in range(3):
        store.put(f"k{i}", b"v")
    etcd.ctl("compact", str(revision + 3))

    store.start_watch(revision + 1)
    with pytest.raises(ResyncNeeded, match="compacted"):
        store.next_changes(5.0)
    assert not watch_threads()

    data, revision = store.snapshot()
    assert sorted(data) == ["k0", "k1", "k2"]
    store.start_watch(revision + 1)
    store.put("k3", b"v")
    assert collect(store, 1) == [Change("k3", b"v", revision + 1)]


# -- outages ----------------------------------------------------------------------


def test_etcd_stop_and_restart(own_etcd):
    ds = open_store(own_etcd)
    try:
        ds.put("before", b"1")
        _, revision = ds.snapshot()
        ds.start_watch(revision + 1)

        own_etcd.stop()
        error = raises_within((DatastoreUnavailable, ResyncNeeded), 10.0,
                              lambda: ds.next_changes(10.0))
        assert own_etcd.url in str(error)
        assert not watch_threads(), "a watch thread outlived the error (it would spin)"

        start = time.monotonic()
        with pytest.raises(DatastoreUnavailable, match="connection refused") as caught:
            ds.snapshot()
        assert time.monotonic() - start < TIMEOUT + 1
        assert own_etcd.url in str(caught.value)

        own_etcd.start()  # same data dir, same port
        data, revision2 = ds.snapshot()
        assert data == {"before": b"1"} and revision2 == revision
        ds.start_watch(revision2 + 1)
        own_etcd.ctl("put", f"{PREFIX}/after", "2")
        assert collect(ds, 1) == [Change("after", b"2", revision2 + 1)]
    finally:
        ds.close()


def test_hung_etcd_is_noticed_by_keepalive(own_etcd):
    ds = open_store(own_etcd)
    try:
        _, revision = ds.snapshot()
        ds.start_watch(revision + 1)
        own_etcd.pause()  # SIGSTOP: sockets stay open, nothing answers

        error = raises_within((DatastoreUnavailable, ResyncNeeded), 12.0,
                              lambda: ds.next_changes(12.0))
        assert "keepalive" in str(error)
        start = time.monotonic()
        with pytest.raises(DatastoreUnavailable, match="no answer within"):
            ds.snapshot()
        assert time.monotonic() - start < TIMEOUT + 1

        own_etcd.resume()
        assert ds.snapshot()[1] == revision
    finally:
        ds.close()


QUIET_SECONDS = 45  # with pings every 5 s, etcd closed a quiet watch after 30-35 s


@pytest.mark.integration  # a minute of nothing happening: not for test-unit
def test_a_quiet_watch_survives_etcds_ping_policy(own_etcd):
    """etcd (default --grpc-keepalive-min-time 5 s) closes a connection that pings more often
    than that. Our keepalive pings must not trip it: on a quiet cluster the watch stays up (no
    "etcd unreachable" and resync every half minute), and still delivers the next change."""
    ds = open_store(own_etcd)
    try:
        _, revision = ds.snapshot()
        ds.start_watch(revision + 1)
        deadline = time.monotonic() + QUIET_SECONDS
        while (left := deadline - time.monotonic()) > 0:
            assert ds.next_changes(min(left, 5.0)) == []
        own_etcd.ctl("put", f"{PREFIX}/after", "1")
        assert collect(ds, 1) == [Change("after", b"1", revision + 1)]
    finally:
        ds.close()


def test_a_dead_first_endpoint_is_skipped(etcd, prefix):
    dead = f"http://127.0.0.1:{free_port()}"
    ds = open_store(etcd, prefix, endpoints=(dead, etcd.url))
    try:
        ds.put("k", b"v")
        data, revision = ds.snapshot()
        assert data == {"k": b"v"}
        assert etcd.url in ds.describe()
        ds.start_watch(revision + 1)
        ds.put("k", b"w")
        assert collect(ds, 1) == [Change("k", b"w", revision + 1, created=revision)]  # "k" existed
    finally:
        ds.close()


def test_all_endpoints_dead_names_each():
    dead = [f"http://127.0.0.1:{free_port()}", f"http://[::1]:{free_port()}"]
    ds = EtcdDatastore(EtcdConfig(tuple(dead), timeout=TIMEOUT), PREFIX)
    with pytest.raises(DatastoreUnavailable) as caught:
        ds.snapshot()
    for url in dead:
        assert url in str(caught.value)
    ds.close()


def test_heartbeat_before_each_endpoint_that_may_block():
    """Endpoints that accept TCP and never answer each take the whole timeout: the caller's
    heartbeat (the daemon's watchdog) runs before every attempt, in the caller's thread."""
    beats = []
    with hanging_endpoints(3) as urls:
        ds = EtcdDatastore(EtcdConfig(tuple(urls), timeout=0.3), PREFIX,
                           heartbeat=lambda: beats.append(threading.current_thread()))
        try:
            with pytest.raises(DatastoreUnavailable, match="no answer within 0.3 s"):
                ds.snapshot()
        finally:
            ds.close()
    assert beats == [threading.current_thread()] * 3


# -- auth and TLS -------------------------------------------------------------------


def test_username_and_password(own_etcd):
    own_etcd.ctl("user", "add", "root:s3cret-pw")
    own_etcd.ctl("auth", "enable")

    ds = open_store(own_etcd, username="root", password="s3cret-pw")
    wrong = open_store(own_etcd, username="root", password="wrong-pw")
    anonymous = open_store(own_etcd)
    try:
        ds.put("k", b"v")
        data, revision = ds.snapshot()
        assert data == {"k": b"v"}
        ds.start_watch(revision + 1)
        ds.put("k", b"w")
        assert collect(ds, 1) == [Change("k", b"w", revision + 1, created=revision)]  # "k" existed

        # A password change invalidates etcd's tokens: the client re-authenticates.
        own_etcd.ctl("user", "passwd", "root", "--interactive=false",
                     user="root:s3cret-pw", stdin="s3cret-pw\n")
        assert ds.get("k") == b"w"

        with pytest.raises(DatastoreUnavailable, match="authentication failed for user root") as c:
            wrong.snapshot()
        assert "wrong-pw" not in str(c.value) and "wrong-pw" not in repr(wrong)
        assert "s3cret-pw" not in repr(ds) and "s3cret-pw" not in repr(ds._config)

        with pytest.raises(DatastoreUnavailable, match="user name is empty"):
            anonymous.snapshot()
    finally:
        for d in (ds, wrong, anonymous):
            d.close()


@pytest.fixture
def tls_etcd(tmp_path):
    need_etcd()
    tls = TLSFiles(tmp_path / "good")
    server = EtcdProc(tls=tls)
    try:
        yield server.start()
    finally:
        server.close()


def test_tls_with_client_certificate(tls_etcd, tmp_path):
    tls = tls_etcd.tls
    good = dict(ca_cert=tls.ca_cert, cert=tls.client_cert, key=tls.client_key)
    ds = open_store(tls_etcd, **good)
    try:
        ds.put("k", b"v")
        data, revision = ds.snapshot()
        assert data == {"k": b"v"}
        ds.start_watch(revision + 1)
        ds.put("k", b"w")
        assert collect(ds, 1) == [Change("k", b"w", revision + 1, created=revision)]  # "k" existed
    finally:
        ds.close()

    other_ca = TLSFiles(tmp_path / "other", name="other-ca")
    cases = {
        "TLS handshake failed: certificate verify failed": dict(good, ca_cert=other_ca.ca_cert),
        "rejected the client certificate": dict(ca_cert=tls.ca_cert),
        f"key file {tmp_path}/missing.key: cannot read": dict(good, key=f"{tmp_path}/missing.key"),
    }
    for message, settings in cases.items():
        bad = open_store(tls_etcd, **settings)
        with pytest.raises(DatastoreUnavailable, match=message) as caught:
            bad.snapshot()
        if "missing" not in message:
            assert tls_etcd.url in str(caught.value)
        bad.close()

    plain = open_store(tls_etcd, endpoints=(tls_etcd.url.replace("https", "http"),))
    with pytest.raises(DatastoreUnavailable, match="https"):
        plain.snapshot()
    plain.close()


# -- settings -----------------------------------------------------------------------


def test_password_stays_out_of_the_adapters_repr():
    config = EtcdConfig(("http://192.0.2.1:2379",), username="u", password="hunter2")
    assert "hunter2" not in repr(EtcdDatastore(config, PREFIX))


def test_several_endpoints_are_described_as_such():
    ds = EtcdDatastore(EtcdConfig("http://192.0.2.1:2379, http://[2001:db8::1]:2379"), PREFIX)  # does not connect
    assert ds.describe() == "etcd http://192.0.2.1:2379 (1 of 2 endpoints)"
    ds.close()
