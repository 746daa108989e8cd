"""etcd over TLS with a client certificate, end to end through the daemon; and what a wrong CA
or a wrong or missing client certificate does: a clear error, never a traceback or a key.

Topology (namespaces of this module's lab):
    etcd  192.0.2.2   https only, --client-cert-auth, certificates from a throw-away CA
    rr1   192.0.2.10  2001:db8::10   BIRD + BIRD6 + the daemon
    a     192.0.2.21  a Calico-like node's BIRD peering with rr1
"""

from __future__ import annotations

import os
import re
import stat
import time

import pytest

from tests.lab.notify import NotifySocket
from tests.lab import CalicoData, Reflector, calico_node_bird_config, proto_name, wait_for
from tests.lab.world import AS_NUM, CLUSTER_ID, ETCD_IP, NODES, RR1

from tests.security.security_helpers import (ThrowAwayCA, assert_no_secrets, cli, no_traceback, private_key_fragments,
                       settings_file, start_daemon, start_secure_etcd)

pytestmark = pytest.mark.integration

CLIENT_A = proto_name("Client", NODES["a"].ipv4)
CLIENT_B = proto_name("Client", NODES["b"].ipv4)


@pytest.fixture(scope="module")
def tls_world(lab):
    pki = lab.tmp / "pki"
    good = ThrowAwayCA(pki, "good")
    server_cert, server_key = good.issue("etcd", f"IP:{ETCD_IP}", "serverAuth")
    client_cert, client_key = good.issue("calico-rr", "DNS:calico-rr", "clientAuth")
    other = ThrowAwayCA(pki, "other")
    stranger_cert, stranger_key = other.issue("calico-rr", "DNS:calico-rr", "clientAuth")
    etcd_host = lab.add_host("etcd", ETCD_IP)
    etcd = start_secure_etcd(lab, etcd_host,
                             server_tls={"ca": good.cert, "cert": server_cert, "key": server_key},
                             client_tls={"ca": good.cert, "cert": client_cert, "key": client_key})
    assert etcd.endpoint.startswith("https://")
    calico = CalicoData(etcd)
    calico.set_global_as(AS_NUM)
    name, ip4, ip6 = RR1
    calico.add_reflector(ip4, CLUSTER_ID)
    calico.add_global_peer(ip4, AS_NUM)
    calico.add_node("a", NODES["a"].ipv4)
    rr = Reflector(lab, lab.add_host(name, ip4, ip6), [etcd.endpoint],
                   settings={"safety": {"state_dir": str(lab.tmp / "rr-state")}})
    settings_file(rr, ca_cert=good.cert, cert=client_cert, key=client_key)
    node_host = lab.add_host("a", NODES["a"].ipv4)
    node_bird = lab.start_bird(node_host, calico_node_bird_config(
        NODES["a"].ipv4, AS_NUM, [ip4], NODES["a"].block4))
    secrets = private_key_fragments([client_key, stranger_key, server_key, good.key, other.key])
    return {"lab": lab, "etcd": etcd, "calico": calico, "rr": rr, "node": node_bird, "good": good,
            "client": (client_cert, client_key), "stranger": (stranger_cert, stranger_key),
            "other": other, "secrets": secrets}


def test_tls_client_certificate_end_to_end(tls_world, figures):
    w = tls_world
    rr: Reflector = w["rr"]
    notify = NotifySocket(w["lab"].tmp / "notify-tls.sock")
    started = time.monotonic()
    rr.daemon = start_daemon(rr, notify)
    try:
        rr.wait_established(CLIENT_A, 4, timeout=90)
        w["node"].wait_established(proto_name("Node", RR1[1]), timeout=60)
        established_after = time.monotonic() - started
        # A change after start travels the TLS watch.
        w["calico"].add_node("b", NODES["b"].ipv4)
        wait_for(lambda: (rr.assert_alive(), CLIENT_B in rr.bird.protocols())[1], 30,
                 what=f"{CLIENT_B} configured from a watched change",
                 describe=lambda: rr.bird.birdc("show protocols") + rr.log()[-2000:])
        wait_for(lambda: "etcd ok at revision" in notify.status(), 10, what="STATUS etcd ok",
                 describe=notify.status)
        for path in (rr.bird_conf, rr.bird6_conf):
            mode = stat.S_IMODE(os.stat(path).st_mode)
            assert mode == 0o640, f"{path} has mode {mode:o}, not 640"
        render = cli(rr.host, rr.config, "render")
        no_traceback(render)
        assert render.returncode == 0, render.stderr
        assert f"protocol bgp {CLIENT_A} " in render.stdout
        status = cli(rr.host, rr.config, "status")
        no_traceback(status)
        assert status.returncode == 0, status.stderr
        assert CLIENT_A in status.stdout and CLIENT_B in status.stdout
        checked = assert_no_secrets({
            "daemon log (debug)": rr.log(), "STATUS=": "\n".join(notify.statuses()),
            "render stdout": render.stdout, "render stderr": render.stderr,
            "status stdout": status.stdout, "status stderr": status.stderr,
        }, w["secrets"])
    finally:
        rr.stop()
        notify.close()
    figures.add("security", "tls_end_to_end", fault="etcd over TLS",
                done="etcd https with --client-cert-auth, throw-away CA; daemon at debug level, "
                "render, status",
                figure=f"session with a node Established {established_after:.1f} s after the daemon started; "
                       f"configs mode 0640; key PEM in 0 of {checked} outputs")


BAD = {
    "wrong CA": lambda w: dict(ca_cert=w["other"].cert, cert=w["client"][0], key=w["client"][1]),
    "client certificate from another CA": lambda w: dict(ca_cert=w["good"].cert, cert=w["stranger"][0],
                                                         key=w["stranger"][1]),
    "no client certificate": lambda w: dict(ca_cert=w["good"].cert),
}


@pytest.mark.parametrize("case", list(BAD))
def test_tls_bad_credentials_fail_clearly(tls_world, figures, case):
    w = tls_world
    rr: Reflector = w["rr"]
    bad = settings_file(rr, re.sub(r"\W+", "-", case), **BAD[case](w))
    render = cli(rr.host, bad, "render")
    no_traceback(render)
    assert render.returncode == 1, (render.returncode, render.stdout, render.stderr)
    assert render.stdout == ""
    message = render.stderr.strip()
    assert re.search(r"TLS|certificate", message), message
    assert message.count("\n") == 0, f"one line expected:\n{message}"

    notify = NotifySocket(w["lab"].tmp / "notify-bad.sock")
    daemon = start_daemon(rr, notify, config=bad, name=f"rr1-bad-{re.sub(r'[^a-z]+', '-', case)}")
    try:
        wait_for(lambda: "etcd unreachable" in notify.status(), 30,
                 what="STATUS= saying etcd is unreachable", describe=notify.status)
        wait_for(lambda: re.search(r"etcd unreachable \(.*(TLS|certificate)", daemon.log()), 15,
                 what="the daemon's log naming the TLS problem", describe=lambda: daemon.log()[-2000:])
        assert daemon.alive(), daemon.log()
        assert "Traceback" not in daemon.log(), daemon.log()[-3000:]
        # BIRD keeps what it runs: the good session stays.
        assert rr.bird.protocols()[CLIENT_A].state == "up"
        assert_no_secrets({"render stderr": render.stderr, "daemon log (debug)": daemon.log(),
                           "STATUS=": "\n".join(notify.statuses())}, w["secrets"])
    finally:
        daemon.stop()
        notify.close()
    figures.add("security", "tls_bad_" + re.sub(r"\W+", "_", case.lower()), fault="etcd TLS misconfigured", done=case,
                figure=f"render exit 1, one line: ...{message.rsplit(':2379: ', 1)[-1]}; "
                       "daemon keeps running, STATUS= etcd unreachable; no traceback, no key")
