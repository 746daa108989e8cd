"""ConfigApplier against real `bird -p` and a real BIRD 1.6 in a network namespace."""
from __future__ import annotations

import errno
import os
import stat
import subprocess
from contextlib import contextmanager

import pytest

import birdproc
from tests import prereq
from rr_service.bird.apply import ApplyStatus, BirdTarget, ConfigApplier, ConfigRejected

BASE = """\
router id 192.0.2.1;
protocol device { }
protocol static st1 { route 10.0.0.0/24 blackhole; }
"""
WITH_PEER = BASE + "protocol bgp peer_new { local as 64512; neighbor 192.0.2.99 as 64512; }\n"
BROKEN = BASE + "protocol static st2 { route 10.1.0.0/24 blackhole }\n"  # missing ';'


def temps(folder):
    return [n for n in os.listdir(folder) if ".tmp-" in n]


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def protocol_names(ns):
    return {p.name for p in ns.client().show_protocols()}


@pytest.fixture
def bird():
    """BIRD running BASE from <dir>/bird.conf, and an applier for that file and socket."""
    birdproc.skip_unless_possible()
    with birdproc.running_bird(BASE) as ns:
        conf = os.path.join(ns.workdir, "bird.conf")
        yield ns, ConfigApplier(BirdTarget(conf, birdproc.BIRD, ns.socket_path), 5.0)


@pytest.fixture
def offline():
    """A folder with bird.conf = BASE and an applier whose BIRD socket does not exist."""
    birdproc.skip_unless_possible(netns=False)
    with birdproc.short_tmpdir() as d:
        conf = os.path.join(d, "bird.conf")
        write(conf, BASE)
        yield d, ConfigApplier(BirdTarget(conf, birdproc.BIRD, os.path.join(d, "no.ctl")), 2.0)


def written_while_bird_unreachable(ns, applier, text):
    """apply(text) with BIRD's socket moved away (not a restart: a restarted BIRD would read
    the file itself): checked by `bird -p` and renamed into place."""
    os.rename(ns.socket_path, ns.socket_path + ".away")
    try:
        assert applier.apply(text) is ApplyStatus.WRITTEN_BIRD_DOWN
    finally:
        os.rename(ns.socket_path + ".away", ns.socket_path)
    assert read(applier.target.config_path) == text.encode()
    return text


@pytest.fixture
def refusing_bird():
    """A config that passes `bird -p` (run as root) but that BIRD refuses at `configure`:
    BIRD runs as nobody, like Debian's bird.service runs as bird, on <dir>/bird.conf = BASE
    (owned by nobody); a config that includes `secret` (only root can read it) is refused.
    Yields (dir, bird.conf, secret, the namespace, an applier for bird.conf)."""
    birdproc.skip_unless_possible()
    with birdproc.short_tmpdir() as d:
        conf = os.path.join(d, "bird.conf")
        write(conf, BASE)
        os.chown(conf, 65534, 65534)
        secret = os.path.join(d, "secret.conf")
        write(secret, "protocol static secret { route 10.9.0.0/24 blackhole; }\n")
        os.chmod(secret, 0o600)
        with birdproc.BirdNetns(d) as ns:
            ns.start(conf, user="nobody", group="nogroup")
            yield d, conf, secret, ns, ConfigApplier(BirdTarget(conf, birdproc.BIRD, ns.socket_path), 5.0)


# -- with a running BIRD ---------------------------------------------------------------


@pytest.mark.integration
def test_first_apply_configures_without_rewriting_identical_file(bird):
    ns, applier = bird
    path = applier.target.config_path
    before = os.stat(path)
    assert applier.accepted_text is None
    assert applier.apply(BASE) is ApplyStatus.APPLIED
    after = os.stat(path)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert applier.accepted_text == BASE


@pytest.mark.integration
def test_unchanged_touches_neither_file_nor_bird(bird):
    ns, applier = bird
    assert applier.apply(WITH_PEER) is ApplyStatus.APPLIED
    before = os.stat(applier.target.config_path)
    # With BIRD gone, any attempt to reload would answer WRITTEN_BIRD_DOWN: UNCHANGED proves
    # that none was made.
    ns.stop()
    assert applier.apply(WITH_PEER) is ApplyStatus.UNCHANGED
    after = os.stat(applier.target.config_path)
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == \
        (before.st_ino, before.st_mtime_ns, before.st_size)


@pytest.mark.integration
def test_good_change_is_applied(bird):
    ns, applier = bird
    path = applier.target.config_path
    assert "peer_new" not in protocol_names(ns)
    assert applier.apply(WITH_PEER) is ApplyStatus.APPLIED
    assert "peer_new" in protocol_names(ns)
    assert read(path) == WITH_PEER.encode()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert applier.accepted_text == WITH_PEER
    assert temps(ns.workdir) == []


@pytest.mark.integration
def test_file_edited_behind_our_back_is_rewritten(bird):
    ns, applier = bird
    path = applier.target.config_path
    assert applier.apply(WITH_PEER) is ApplyStatus.APPLIED
    write(path, BASE)  # a person "fixes" the file by hand
    assert applier.apply(WITH_PEER) is ApplyStatus.APPLIED
    assert read(path) == WITH_PEER.encode()


@pytest.mark.integration
def test_offline_check_rejects_and_old_file_untouched(bird):
    ns, applier = bird
    path = applier.target.config_path
    applier.apply(BASE)
    before_bytes, before = read(path), os.stat(path)
    with pytest.raises(ConfigRejected) as ei:
        applier.apply(BROKEN)
    assert "syntax error" in str(ei.value)
    assert ":4:" in str(ei.value)  # BIRD's own file:line:col
    assert read(path) == before_bytes
    assert os.stat(path).st_ino == before.st_ino
    assert temps(ns.workdir) == []
    assert applier.accepted_text == BASE
    assert "st2" not in protocol_names(ns)


@pytest.mark.integration
def test_refused_at_reconfigure_restores_previous_file(refusing_bird):
    d, conf, secret, ns, applier = refusing_bird
    assert applier.apply(BASE) is ApplyStatus.APPLIED
    before = read(conf)
    before_stat = os.stat(conf)

    with pytest.raises(ConfigRejected) as ei:
        applier.apply(BASE + f'include "{secret}";\n')
    assert "Unable to open included file" in str(ei.value)
    assert "Permission denied" in str(ei.value)
    # BIRD loads the candidate before it is renamed into place: the refused text never
    # touched the target, not even its inode or mode.
    assert read(conf) == before
    st = os.stat(conf)
    assert (st.st_ino, st.st_uid, st.st_gid, st.st_mode) == (
        before_stat.st_ino, 65534, 65534, before_stat.st_mode)
    assert temps(d) == []
    assert applier.accepted_text == BASE
    assert protocol_names(ns) == {"device1", "st1"}
    # and the good path still works afterwards, with the ownership BIRD needs
    assert applier.apply(WITH_PEER) is ApplyStatus.APPLIED
    assert "peer_new" in protocol_names(ns)


@pytest.mark.integration
def test_refused_on_retry_falls_back_to_accepted_text(refusing_bird):
    # The candidate reached the disk while BIRD was unreachable; when BIRD is back and
    # refuses it, the file must go back to what BIRD last accepted.
    d, conf, secret, ns, applier = refusing_bird
    assert applier.apply(BASE) is ApplyStatus.APPLIED
    bad = written_while_bird_unreachable(ns, applier, BASE + f'include "{secret}";\n')
    with pytest.raises(ConfigRejected, match="Permission denied"):
        applier.apply(bad)
    assert read(conf) == BASE.encode()
    assert applier.accepted_text == BASE


@pytest.mark.integration
def test_refused_in_place_after_start_keeps_the_file_that_was_there(bird):
    # Right after a start (or SIGHUP) nothing is accepted yet. The file on disk already holds
    # the render, BIRD refuses it at `configure`: the file was there before this apply, so it
    # stays (BIRD runs its older config from memory and must find a file when it restarts).
    ns, applier = bird
    path = applier.target.config_path
    write(path, BROKEN)  # left by an earlier run, or an earlier daemon
    before = os.stat(path)
    with pytest.raises(ConfigRejected, match="syntax error") as ei:
        applier.apply(BROKEN)
    assert os.path.exists(path), "a refusal removed the file BIRD had"
    assert read(path) == BROKEN.encode()
    assert os.stat(path).st_ino == before.st_ino
    assert "stays as it was" in str(ei.value)
    assert temps(ns.workdir) == []
    assert applier.accepted_text is None
    assert protocol_names(ns) == {"device1", "st1"}  # BIRD still runs BASE
    assert applier.apply(WITH_PEER) is ApplyStatus.APPLIED
    assert read(path) == WITH_PEER.encode()


@pytest.mark.integration
def test_refused_in_place_restores_the_file_our_write_replaced(refusing_bird):
    # Nothing accepted yet, BIRD unreachable: the candidate replaced the file BIRD runs. When
    # BIRD answers again and refuses the candidate, the file it replaced goes back.
    d, conf, secret, ns, applier = refusing_bird
    bad = written_while_bird_unreachable(ns, applier, BASE + f'include "{secret}";\n')
    with pytest.raises(ConfigRejected, match="Permission denied") as ei:
        applier.apply(bad)
    assert os.path.exists(conf), "a refusal removed the file BIRD had"
    assert read(conf) == BASE.encode()
    assert os.stat(conf).st_uid == 65534
    assert "previous file is restored" in str(ei.value)
    assert temps(d) == []
    assert applier.accepted_text is None


@pytest.mark.integration
def test_refused_at_reconfigure_removes_file_that_did_not_exist():
    # BIRD as nobody cannot read a new file we create root:root 0640 in a root-owned
    # folder: a real refusal at reconfigure, after `bird -p` (as root) passed.
    birdproc.skip_unless_possible()
    with birdproc.short_tmpdir() as d:
        conf = os.path.join(d, "bird.conf")
        write(conf, BASE)
        os.chmod(conf, 0o644)
        other = os.path.join(d, "other.conf")
        with birdproc.BirdNetns(d) as ns:
            ns.start(conf, user="nobody", group="nogroup")
            applier = ConfigApplier(BirdTarget(other, birdproc.BIRD, ns.socket_path), 5.0)
            with pytest.raises(ConfigRejected, match="Permission denied"):
                applier.apply(WITH_PEER)
            assert not os.path.exists(other)
            assert temps(d) == []
            assert applier.accepted_text is None


@pytest.mark.integration
def test_bird_down_then_up():
    birdproc.skip_unless_possible()
    with birdproc.short_tmpdir() as d:
        conf = os.path.join(d, "bird.conf")
        with birdproc.BirdNetns(d) as ns:
            applier = ConfigApplier(BirdTarget(conf, birdproc.BIRD, ns.socket_path), 2.0)
            assert applier.apply(WITH_PEER) is ApplyStatus.WRITTEN_BIRD_DOWN
            assert read(conf) == WITH_PEER.encode()
            assert applier.accepted_text is None
            ino = os.stat(conf).st_ino

            ns.start(conf)
            assert applier.apply(WITH_PEER) is ApplyStatus.APPLIED
            assert os.stat(conf).st_ino == ino  # not rewritten, only reloaded
            assert applier.accepted_text == WITH_PEER
            assert "peer_new" in protocol_names(ns)
            assert applier.apply(WITH_PEER) is ApplyStatus.UNCHANGED


# -- without BIRD running (bird -p only) ---------------------------------------------------


@pytest.mark.integration  # runs the BIRD binary (bird -p)
def test_bird_down_writes_checked_file(offline):
    d, applier = offline
    assert applier.apply(WITH_PEER) is ApplyStatus.WRITTEN_BIRD_DOWN
    assert read(applier.target.config_path) == WITH_PEER.encode()
    assert stat.S_IMODE(os.stat(applier.target.config_path).st_mode) == 0o640
    assert temps(d) == []
    # not accepted, so the same text is tried again
    assert applier.apply(WITH_PEER) is ApplyStatus.WRITTEN_BIRD_DOWN


@pytest.mark.integration  # runs the BIRD binary (bird -p)
def test_rejected_offline_without_bird(offline):
    d, applier = offline
    with pytest.raises(ConfigRejected, match="syntax error"):
        applier.apply(BROKEN)
    assert read(applier.target.config_path) == BASE.encode()
    assert temps(d) == []


@pytest.mark.integration  # runs the BIRD binary (bird -p)
def test_missing_binary_leaves_file_alone(offline):
    d, applier = offline
    applier = ConfigApplier(BirdTarget(applier.target.config_path, "/nonexistent/bird",
                                       applier.target.socket_path))
    with pytest.raises(OSError):
        applier.apply(WITH_PEER)
    assert read(applier.target.config_path) == BASE.encode()
    assert temps(d) == []


@pytest.mark.integration
def test_owner_kept_and_mode_0640(offline):
    if os.geteuid() != 0:
        prereq.missing("needs root to chown")
    d, applier = offline
    path = applier.target.config_path
    os.chown(path, 65534, 65534)
    os.chmod(path, 0o600)
    applier.apply(WITH_PEER)
    st = os.stat(path)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (65534, 65534, 0o640)


# -- write failures ----------------------------------------------------------------------


@contextmanager
def tmpfs(path, options):
    os.makedirs(path)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "rrtest", path],
                   check=True, capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", path], capture_output=True)


def _needs_mount():
    birdproc.skip_unless_possible(netns=False)
    if os.geteuid() != 0:
        prereq.missing("needs root to mount a tmpfs")


@contextmanager
def offline_on_tmpfs(d, name, options):
    """A tmpfs mounted at <d>/<name> holding bird.conf = BASE, and an applier for that file
    whose BIRD socket does not exist: (the mount point, the config's path, the applier)."""
    _needs_mount()
    with tmpfs(os.path.join(d, name), options) as mnt:
        conf = os.path.join(mnt, "bird.conf")
        write(conf, BASE)
        yield mnt, conf, ConfigApplier(BirdTarget(conf, birdproc.BIRD, os.path.join(d, "no.ctl")))


@pytest.mark.integration
def test_read_only_folder_leaves_old_file(offline):
    d, _ = offline
    with offline_on_tmpfs(d, "ro", "size=1m,mode=0755") as (mnt, conf, applier):
        # root ignores permission bits, so read-only has to come from the mount itself
        subprocess.run(["mount", "-o", "remount,ro", mnt], check=True, capture_output=True)
        with pytest.raises(OSError) as ei:
            applier.apply(WITH_PEER)
        assert ei.value.errno == errno.EROFS
        assert conf in str(ei.value)
        assert read(conf) == BASE.encode()
        assert temps(mnt) == []


@pytest.mark.integration
def test_folder_read_only_at_the_rename_names_the_config_and_the_temp_goes_next_time(offline, monkeypatch):
    """The folder goes read-only after the candidate was written and checked, just before it
    takes the config's name (a filesystem remounted read-only on an I/O error): the error
    names the config, not the temp file that cannot be removed now; once the folder is
    writable again, the next write removes that temp file too."""
    d, _ = offline
    with offline_on_tmpfs(d, "ro-late", "size=1m,mode=0755") as (mnt, conf, applier):
        rename = ConfigApplier._rename

        def read_only_first(self, tmp):
            subprocess.run(["mount", "-o", "remount,ro", mnt], check=True, capture_output=True)
            return rename(self, tmp)
        monkeypatch.setattr(ConfigApplier, "_rename", read_only_first)
        with pytest.raises(OSError) as ei:
            applier.apply(WITH_PEER)
        assert ei.value.errno == errno.EROFS
        assert conf in str(ei.value) and ".tmp-" not in str(ei.value), str(ei.value)
        assert read(conf) == BASE.encode()
        assert len(temps(mnt)) == 1  # nothing can remove it while the folder is read-only

        monkeypatch.setattr(ConfigApplier, "_rename", rename)
        subprocess.run(["mount", "-o", "remount,rw", mnt], check=True, capture_output=True)
        assert applier.apply(WITH_PEER) is ApplyStatus.WRITTEN_BIRD_DOWN
        assert read(conf) == WITH_PEER.encode()
        assert temps(mnt) == []


@pytest.mark.integration  # runs the BIRD binary (bird -p)
def test_a_temp_file_an_earlier_run_left_is_removed_and_nothing_else(offline):
    """A run killed between writing its candidate and renaming it leaves the candidate: the
    next run's first write removes it, and leaves every other file alone."""
    d, applier = offline
    left = os.path.join(d, ".bird.conf.tmp-k1lled")
    others = [os.path.join(d, n) for n in (".bird6.conf.tmp-other", ".bird.conf.swp", "bird.conf.tmp-x")]
    for path in [left, *others]:
        write(path, "half a config")
    assert applier.apply(WITH_PEER) is ApplyStatus.WRITTEN_BIRD_DOWN
    assert not os.path.exists(left)
    assert all(os.path.exists(path) for path in others)
    assert read(applier.target.config_path) == WITH_PEER.encode()


@pytest.mark.integration
def test_disk_full_leaves_old_file_and_no_temp(offline):
    d, _ = offline
    with offline_on_tmpfs(d, "full", "size=64k,mode=0755") as (mnt, conf, applier):
        huge = BASE + "# padding\n" * 20000  # ~200 KB, more than the 64 KB tmpfs
        with pytest.raises(OSError) as ei:
            applier.apply(huge)
        assert ei.value.errno == errno.ENOSPC
        assert conf in str(ei.value)
        assert read(conf) == BASE.encode()
        assert temps(mnt) == []


@pytest.mark.integration
def test_still_accepted_notices_the_file_changed_behind_its_back(bird):
    """The periodic check stats the file and reads it only when it moved: a rewrite with other
    content (or the same content: no false alarm) must still be told apart."""
    ns, applier = bird
    path = applier.target.config_path
    assert applier.apply(WITH_PEER) is ApplyStatus.APPLIED
    assert applier.still_accepted() and applier.still_accepted()
    write(path, WITH_PEER)  # rewritten, same bytes: BIRD still runs them
    assert applier.still_accepted()
    write(path, BASE)  # edited by hand: BIRD no longer runs what the file says
    assert not applier.still_accepted()
    assert applier.apply(WITH_PEER) is ApplyStatus.APPLIED
    assert applier.still_accepted()


@pytest.mark.integration
def test_still_accepted_notices_bird_restarted(bird):
    ns, applier = bird
    assert applier.apply(WITH_PEER) is ApplyStatus.APPLIED
    ns.stop()
    ns.start(applier.target.config_path)  # a new control socket: BIRD may run anything now
    assert not applier.still_accepted()
    assert applier.accepted_text is None


@pytest.mark.integration  # runs the BIRD binary (bird -p)
def test_names_on_disk_follow_the_file(offline):
    """What the drop guard counts as running before BIRD accepted anything from us: the
    sessions of the file on disk, read again when the file changes, none when it is gone."""
    folder, applier = offline
    path = applier.target.config_path
    assert applier.names_on_disk() == frozenset()
    write(path, WITH_PEER)
    assert applier.names_on_disk() == {"peer_new"}
    assert applier.names_on_disk() == {"peer_new"}
    os.unlink(path)
    assert applier.names_on_disk() == frozenset()


# -- handover from the previous run (a restart of calico-rr alone) --------------------------


def configure_calls(applier):
    """Every `configure` the applier sends from now on. (A spy on the real client: BIRD's own
    `show status` shows its last reconfiguration in whole seconds only.)"""
    calls = []
    real = applier.client.configure

    def configure(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    applier.client.configure = configure
    return calls


def next_run(applier, record):
    """A new applier for the same BIRD, as the next start of the daemon makes it."""
    following = ConfigApplier(applier.target, 5.0)
    following.take_over(record)
    return following


@pytest.mark.integration
def test_a_handed_over_config_is_not_reloaded(bird):
    ns, applier = bird
    assert applier.apply(WITH_PEER) is ApplyStatus.APPLIED
    following = next_run(applier, applier.hand_over())
    calls = configure_calls(following)
    assert following.apply(WITH_PEER) is ApplyStatus.TAKEN_OVER
    assert calls == []
    assert following.accepted_text == WITH_PEER and following.still_accepted()
    assert following.apply(WITH_PEER) is ApplyStatus.UNCHANGED
    assert following.apply(BASE) is ApplyStatus.APPLIED  # and on as usual
    assert protocol_names(ns) == {"device1", "st1"}


@pytest.mark.integration
def test_no_handover_is_trusted_once_bird_restarted(bird):
    ns, applier = bird
    assert applier.apply(WITH_PEER) is ApplyStatus.APPLIED
    record = applier.hand_over()
    ns.stop()
    ns.start(applier.target.config_path)
    following = next_run(applier, record)
    calls = configure_calls(following)
    assert following.apply(WITH_PEER) is ApplyStatus.APPLIED
    assert len(calls) == 1
    assert applier.hand_over() is None  # BIRD restarted since it accepted: nothing to tell


@pytest.mark.integration
def test_no_handover_is_trusted_for_a_file_changed_since(bird):
    ns, applier = bird
    path = applier.target.config_path
    assert applier.apply(WITH_PEER) is ApplyStatus.APPLIED
    record = applier.hand_over()
    write(path, BASE)  # edited between the two runs; BIRD still runs WITH_PEER
    following = next_run(applier, record)
    assert following.apply(BASE) is ApplyStatus.APPLIED
    assert protocol_names(ns) == {"device1", "st1"}


@pytest.mark.integration
def test_a_handover_counts_for_its_first_apply_only(bird):
    ns, applier = bird
    assert applier.apply(WITH_PEER) is ApplyStatus.APPLIED
    following = next_run(applier, applier.hand_over())
    assert following.apply(BASE) is ApplyStatus.APPLIED  # another text: configured as usual
    calls = configure_calls(following)
    write(applier.target.config_path, WITH_PEER)  # back to the handed-over text, by hand
    assert following.apply(WITH_PEER) is ApplyStatus.APPLIED
    assert len(calls) == 1


@pytest.mark.integration
def test_handover_records_of_another_file_or_garbage_are_ignored(bird):
    ns, applier = bird
    assert applier.apply(WITH_PEER) is ApplyStatus.APPLIED
    good = applier.hand_over()
    for record in ({**good, "config": "/etc/bird/other.conf"}, {**good, "bird_socket": "x"},
                   {**good, "sha256": None}, "garbage", None, {}):
        following = next_run(applier, record)
        assert following.apply(WITH_PEER) is ApplyStatus.APPLIED, record
