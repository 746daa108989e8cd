"""etcd user/password authentication end to end, a wrong password, and the password never
showing: not in the daemon's debug log, STATUS=, `render`, `status`, `--help`, nor in any
exception text or repr the product makes with it.

Topology (namespaces of this module's lab):
    etcd  192.0.2.2   http, `auth enable`, a read-only user for the reflector
    rr1   192.0.2.10  2001:db8::10   BIRD + BIRD6 + the daemon
"""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
import time

import pytest

from tests.lab.notify import NotifySocket
from tests.lab import CalicoData, Reflector, proto_name, wait_for
from tests.lab.netns import REPO_ROOT
from tests.lab.reflector import PYTHON, _env
from tests.lab.world import AS_NUM, CLUSTER_ID, ETCD_IP, NODES, RR1
from tests.security.security_helpers import (assert_no_secrets, cli, no_traceback, settings_file,
                                             start_daemon, start_secure_etcd)

pytestmark = pytest.mark.integration

USER = "calico-rr"
# Characters that must survive TOML, the environment and gRPC metadata, and a random part.
PASSWORD = "pw-" + secrets.token_urlsafe(18) + "\"'$\\ #"
ROOT_PASSWORD = "root-" + secrets.token_urlsafe(18)
WRONG = "wrong-" + secrets.token_urlsafe(18)
CLIENT_A = proto_name("Client", NODES["a"].ipv4)
CLIENT_B = proto_name("Client", NODES["b"].ipv4)
SECRETS = (PASSWORD, ROOT_PASSWORD, WRONG)


@pytest.fixture(scope="module")
def auth_world(lab):
    etcd_host = lab.add_host("etcd", ETCD_IP)
    etcd = start_secure_etcd(lab, etcd_host)
    etcd.ctl("user", "add", f"root:{ROOT_PASSWORD}", "--interactive=false")
    etcd.ctl("user", "grant-role", "root", "root")
    etcd.ctl("role", "add", "calico-rr-read")
    etcd.ctl("role", "grant-permission", "calico-rr-read", "--prefix=true", "read", "/calico/")
    etcd.ctl("user", "add", f"{USER}:{PASSWORD}", "--interactive=false")
    etcd.ctl("user", "grant-role", USER, "calico-rr-read")
    etcd.ctl("auth", "enable")
    etcd.user = f"root:{ROOT_PASSWORD}"
    calico = CalicoData(etcd)
    calico.set_global_as(AS_NUM)
    name, ip4, ip6 = RR1
    calico.add_reflector(ip4, CLUSTER_ID)
    calico.add_reflector(ip6, CLUSTER_ID)
    calico.add_global_peer(ip4, AS_NUM)
    calico.add_node("a", NODES["a"].ipv4)
    # Without credentials etcd refuses: authentication is really on.
    etcd.user = ""
    refused = etcd.host.run(etcd._base() + ["get", "--prefix", "/calico/"], check=False)
    assert refused.returncode != 0, "etcd answered without credentials"
    etcd.user = f"root:{ROOT_PASSWORD}"
    rr = Reflector(lab, lab.add_host(name, ip4, ip6), [etcd.endpoint],
                   settings={"safety": {"state_dir": str(lab.tmp / "rr-state")}})
    settings_file(rr, username=USER, password=PASSWORD)
    return {"lab": lab, "etcd": etcd, "calico": calico, "rr": rr}


def test_user_password_end_to_end(auth_world, figures):
    w = auth_world
    rr: Reflector = w["rr"]
    notify = NotifySocket(w["lab"].tmp / "notify-auth.sock")
    started = time.monotonic()
    rr.daemon = start_daemon(rr, notify)
    try:
        wait_for(lambda: (rr.assert_alive(), CLIENT_A in rr.bird.protocols())[1], 60,
                 what=f"{CLIENT_A} configured", describe=lambda: rr.log()[-2000:])
        configured_after = time.monotonic() - started
        w["calico"].add_node("b", NODES["b"].ipv4)  # the watch is authenticated too
        wait_for(lambda: (rr.assert_alive(), CLIENT_B in rr.bird.protocols())[1], 30,
                 what=f"{CLIENT_B} configured from a watched change", describe=lambda: rr.log()[-2000:])
        for path in (rr.bird_conf, rr.bird6_conf):
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o640, path
        render = cli(rr.host, rr.config, "render")
        no_traceback(render)
        assert render.returncode == 0 and f"protocol bgp {CLIENT_B} " in render.stdout, render.stderr
        status = cli(rr.host, rr.config, "status")
        no_traceback(status)
        assert status.returncode == 0 and CLIENT_A in status.stdout, status.stderr
        # The container image's environment variables work the same way.
        by_env = cli(rr.host, settings_file(rr, "no-credentials"), "render",
                     env={"ETCD_USERNAME": USER, "ETCD_PASSWORD": PASSWORD})
        assert by_env.returncode == 0 and by_env.stdout == render.stdout, by_env.stderr
        checked = assert_no_secrets({
            "daemon log (debug)": rr.log(), "STATUS=": "\n".join(notify.statuses()),
            "render": render.stdout + render.stderr, "status": status.stdout + status.stderr,
            "render (ETCD_PASSWORD)": by_env.stdout + by_env.stderr,
        }, SECRETS)
    finally:
        rr.stop()
        notify.close()
    figures.add("security", "auth_end_to_end", fault="etcd authentication",
                done="user/password (auth enable, read-only role); daemon at debug level, render, "
                "status, ETCD_PASSWORD",
                figure=f"sessions configured {configured_after:.1f} s after start, watch authenticated; "
                       f"password in 0 of {checked} outputs")


def test_wrong_password_fails_clearly(auth_world, figures):
    w = auth_world
    rr: Reflector = w["rr"]
    bad = settings_file(rr, "wrong-password", username=USER, password=WRONG)
    render = cli(rr.host, bad, "render")
    no_traceback(render)
    assert render.returncode == 1, (render.stdout, render.stderr)
    message = render.stderr.strip()
    assert "authentication failed" in message and USER in message, message
    assert message.count("\n") == 0, message
    notify = NotifySocket(w["lab"].tmp / "notify-wrong.sock")
    daemon = start_daemon(rr, notify, config=bad, name="rr1-wrong-password")
    try:
        wait_for(lambda: "etcd unreachable" in notify.status(), 30, what="STATUS= etcd unreachable",
                 describe=notify.status)
        wait_for(lambda: "authentication failed" in daemon.log(), 15,
                 what="the log naming the failed authentication", describe=lambda: daemon.log()[-2000:])
        assert daemon.alive() and "Traceback" not in daemon.log(), daemon.log()[-3000:]
        assert_no_secrets({"render": render.stdout + render.stderr, "daemon log": daemon.log(),
                           "STATUS=": "\n".join(notify.statuses())}, SECRETS)
    finally:
        daemon.stop()
        notify.close()
    figures.add("security", "auth_wrong_password", fault="etcd authentication", done="wrong password",
                figure=f"render exit 1, one line: ...{message.rsplit(':2379: ', 1)[-1]}; daemon keeps running, "
                       "STATUS= etcd unreachable; no traceback, no password")


HELP = [[], ["run"], ["render"], ["register"], ["unregister"], ["status"], ["accept"]]


def test_password_not_in_help_nor_exception_text(auth_world, figures):
    """--help with the password in the environment, and every exception text and repr the
    product builds from settings holding it: settings repr, a settings error, the datastore
    error of a wrong password with its whole chain, a traceback of it."""
    w = auth_world
    rr: Reflector = w["rr"]
    env = {"ETCD_USERNAME": USER, "ETCD_PASSWORD": PASSWORD}
    texts = {}
    for args in HELP:
        res = cli(rr.host, rr.config, *args, "--help", env=env)
        assert res.returncode == 0, res.stderr
        texts[f"calico-rr {' '.join(args)} --help"] = res.stdout + res.stderr
    probe = r'''
import os, sys, traceback
from rr_service.app import wiring as components
from rr_service.app.settings import load_settings, SettingsError
s = load_settings(sys.argv[1], environ={"ETCD_USERNAME": "calico-rr", "ETCD_PASSWORD": os.environ["PW"]})
print("repr:", repr(s)); print("etcd:", repr(s.etcd)); print("str:", str(s))
try:
    load_settings(sys.argv[1], environ={"ETCD_USERNAME": "", "ETCD_PASSWORD": os.environ["PW"]})
except SettingsError as exc:
    print("pair error:", exc, repr(exc))
try:
    load_settings(sys.argv[1], environ={"ETCD_USERNAME": "x", "ETCD_PASSWORD": os.environ["PW"] + "\n"})
except SettingsError as exc:
    print("control error:", exc, repr(exc))
bad = load_settings(sys.argv[1], environ={"ETCD_USERNAME": "calico-rr", "ETCD_PASSWORD": os.environ["WRONG"]})
store = components.source(bad)
print("store:", repr(store), store.describe())
try:
    store.read()
except Exception as exc:
    print("datastore error:", exc, repr(exc))
    print("".join(traceback.format_exception(exc)))
    print("cause:", repr(exc.__cause__), "context:", repr(exc.__context__))
'''
    res = subprocess.run(["ip", "netns", "exec", rr.host.ns, PYTHON, "-c", probe,
                          str(settings_file(rr, "no-credentials"))],
                         env=dict(_env(), PW=PASSWORD, WRONG=WRONG), cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "datastore error:" in res.stdout and "authentication failed" in res.stdout, res.stdout
    assert "pair error:" in res.stdout and "control error:" in res.stdout, res.stdout
    texts["reprs, settings errors, datastore exception chain"] = res.stdout + res.stderr
    checked = assert_no_secrets(texts, SECRETS)
    figures.add("security", "secrets_in_output", fault="secrets in output",
                done="--help of every command (password in the environment); repr of settings and "
                "datastore, settings errors, a failed login's exception chain and traceback",
                figure=f"password in 0 of {checked} texts")
