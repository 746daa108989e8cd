"""Tests for rr_service.settings (pure: no root, network or etcd needed)."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest

from rr_service.app import settings as settings_mod
from rr_service.app.settings import (
    DEFAULT_CONFIG_PATH,
    MAX_CONFIG_BYTES,
    SCHEMA,
    BirdSettings,
    EtcdSettings,
    LogSettings,
    MetricsSettings,
    FilterSettings,
    SafetySettings,
    ReflectorSettings,
    Settings,
    SettingsError,
    load_settings,
)

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = REPO / "packaging" / "config.toml"
SECRET = "s3cr3t-Pa55w0rd"

DEFAULTS = {
    ("reflector", "ip6"): "",
    ("reflector", "node_name"): "",
    ("etcd", "endpoints"): ("http://127.0.0.1:2379",),
    ("etcd", "prefix"): "/calico/bgp/v1",
    ("etcd", "schema"): "auto",
    ("etcd", "ca_cert"): "",
    ("etcd", "cert"): "",
    ("etcd", "key"): "",
    ("etcd", "username"): "",
    ("etcd", "password"): "",
    ("bird", "flavour"): "auto",
    ("bird", "config"): "/etc/bird/bird.conf",
    ("bird", "config6"): "/etc/bird/bird6.conf",
    ("bird", "socket"): "/run/bird/bird.ctl",
    ("bird", "socket6"): "/run/bird/bird6.ctl",
    ("bird", "binary"): "/usr/sbin/bird",
    ("bird", "binary6"): "/usr/sbin/bird6",
    ("bird", "burst_settle_seconds"): 0.1,
    ("bird", "burst_max_delay_seconds"): 0.5,
    ("log", "level"): "info",
    ("safety", "max_drop_share"): 0.5,
    ("safety", "hold_seconds"): 300.0,
    ("safety", "state_dir"): "/run/calico-routereflector",
    ("metrics", "listen"): "",
    ("filters", "mode"): "pools",
    ("filters", "import_limit"): 1000,
    ("datastore", "type"): "etcdv3",
    ("kubernetes", "kubeconfig"): "",
    ("kubernetes", "secret_namespace"): "kube-system",
}


def get(s: Settings, section: str, key: str):
    return getattr(getattr(s, section), key)


@pytest.fixture
def write(tmp_path):
    """write(text_or_bytes) -> path of a settings file with that content."""

    def _write(content, name="config.toml"):
        p = tmp_path / name
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content, encoding="utf-8")
        return str(p)

    return _write


@pytest.fixture
def no_default_file(monkeypatch, tmp_path):
    """Point DEFAULT_CONFIG_PATH at a file that does not exist."""
    missing = str(tmp_path / "absent" / "config.toml")
    monkeypatch.setattr(settings_mod, "DEFAULT_CONFIG_PATH", missing)
    return missing


# --------------------------------------------------------------------------- interface


def test_interface_names():
    assert DEFAULT_CONFIG_PATH == "/etc/calico-routereflector/config.toml"
    assert issubclass(SettingsError, Exception)
    fields = lambda cls: [f.name for f in dataclasses.fields(cls)]  # noqa: E731
    assert fields(ReflectorSettings) == ["ip", "ip6", "node_name"]
    assert fields(EtcdSettings) == ["endpoints", "prefix", "ca_cert", "cert", "key", "username", "password", "schema"]
    assert fields(BirdSettings) == ["flavour", "config", "config6", "socket", "socket6", "binary", "binary6",
                                   "burst_settle_seconds", "burst_max_delay_seconds"]
    assert fields(LogSettings) == ["level"]
    assert fields(SafetySettings) == ["max_drop_share", "hold_seconds", "state_dir"]
    assert fields(MetricsSettings) == ["listen"]
    assert fields(FilterSettings) == ["mode", "import_limit"]
    assert fields(Settings) == ["reflector", "etcd", "bird", "log", "safety", "source", "metrics", "filters",
                                "datastore", "kubernetes"]


def test_schema_covers_every_default():
    assert {(s.section, s.key) for s in SCHEMA} == set(DEFAULTS) | {("reflector", "ip")}


def test_settings_are_frozen(no_default_file):
    s = load_settings(environ={"IP": "192.0.2.10"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.reflector.ip = "192.0.2.11"  # type: ignore[misc]


# --------------------------------------------------------------------------- defaults


def test_defaults_without_file(no_default_file):
    s = load_settings(environ={"IP": "192.0.2.10"})
    assert s.source == "(defaults)"
    assert s.reflector.ip == "192.0.2.10"
    for (section, key), value in DEFAULTS.items():
        assert get(s, section, key) == value, (section, key)


def test_defaults_from_empty_file(write):
    path = write("")
    s = load_settings(path, environ={"IP": "192.0.2.10"})
    assert s.source == path
    for (section, key), value in DEFAULTS.items():
        assert get(s, section, key) == value, (section, key)


def test_environ_none_uses_os_environ(no_default_file, monkeypatch):
    for s in SCHEMA:
        if s.env:
            monkeypatch.delenv(s.env, raising=False)
    monkeypatch.setenv("IP", "198.51.100.7")
    assert load_settings().reflector.ip == "198.51.100.7"


def test_require_ip_false(no_default_file):
    s = load_settings(environ={}, require_ip=False)
    assert s.reflector.ip == ""


@pytest.mark.parametrize("environ", [{}, {"IP": ""}])
def test_missing_ip_message(no_default_file, environ):
    with pytest.raises(SettingsError) as ei:
        load_settings(environ=environ)
    assert str(ei.value) == (
        f"[reflector] ip is not set (set it in {no_default_file} or the IP environment variable)"
    )


def test_missing_ip_message_names_explicit_file(write):
    path = write("[reflector]\n")
    with pytest.raises(SettingsError, match=re.escape(f"set it in {path} or the IP environment variable")):
        load_settings(path, environ={})


def test_example_config_loads_to_defaults():
    s = load_settings(str(EXAMPLE_CONFIG), environ={"IP": "192.0.2.10"})
    assert s.source == str(EXAMPLE_CONFIG)
    for (section, key), value in DEFAULTS.items():
        assert get(s, section, key) == value, (section, key)


def test_example_config_documents_every_setting_with_its_default(write):
    """Uncommenting every '#key = value' line must give exactly the defaults."""
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    documented = re.findall(r"^#([a-z0-9_]+) = ", text, flags=re.M)
    assert sorted(documented) == sorted(s.key for s in SCHEMA)
    for s in SCHEMA:
        if s.env:
            assert s.env in text, f"{s.env} not mentioned"
    assert "0640" in text and "root:bird" in text
    uncommented = re.sub(r"^#(?=[a-z0-9_]+ = )", "", text, flags=re.M)
    s = load_settings(write(uncommented), environ={})
    assert s.reflector.ip == "192.0.2.10"
    for (section, key), value in DEFAULTS.items():
        assert get(s, section, key) == value, (section, key)


# --------------------------------------------------------------------------- file values


FULL_FILE = """
[reflector]
ip = "10.0.0.1"
ip6 = "2001:DB8::0:1"
[etcd]
endpoints = ["https://etcd-1.example.com:2379", "https://10.0.0.2:2379/", "https://[2001:db8::2]:2379"]
prefix = "/calico/bgp/v1/"
ca_cert = "/etc/calico-routereflector/ca.pem"
cert = "/etc/calico-routereflector/cert.pem"
key = "/etc/calico-routereflector/key.pem"
username = "rr"
password = "%s"
[bird]
flavour = "bird2"
config = "/etc/bird/x.conf"
config6 = "/etc/bird/x6.conf"
socket = "/run/bird/x.ctl"
socket6 = "/run/bird/x6.ctl"
binary = "/usr/local/sbin/bird"
binary6 = "/usr/local/sbin/bird6"
[log]
level = "DEBUG"
""" % SECRET


def test_full_file(write):
    s = load_settings(write(FULL_FILE), environ={})
    assert s.reflector == ReflectorSettings(ip="10.0.0.1", ip6="2001:db8::1")
    assert s.etcd.endpoints == (
        "https://etcd-1.example.com:2379",
        "https://10.0.0.2:2379",
        "https://[2001:db8::2]:2379",
    )
    assert s.etcd.prefix == "/calico/bgp/v1"
    assert (s.etcd.ca_cert, s.etcd.cert, s.etcd.key) == (
        "/etc/calico-routereflector/ca.pem",
        "/etc/calico-routereflector/cert.pem",
        "/etc/calico-routereflector/key.pem",
    )
    assert (s.etcd.username, s.etcd.password) == ("rr", SECRET)
    assert s.bird == BirdSettings(
        "bird2", "/etc/bird/x.conf", "/etc/bird/x6.conf", "/run/bird/x.ctl", "/run/bird/x6.ctl",
        "/usr/local/sbin/bird", "/usr/local/sbin/bird6",
    )
    assert s.log.level == "debug"


def test_utf8_bom_accepted(write):
    path = write(b"\xef\xbb\xbf[reflector]\nip = \"10.0.0.1\"\n")
    assert load_settings(path, environ={}).reflector.ip == "10.0.0.1"


# --------------------------------------------------------------------------- environment


BASE_FILE = """
[reflector]
ip = "10.0.0.1"
ip6 = "2001:db8::1"
[etcd]
endpoints = ["http://10.0.0.5:2379"]
ca_cert = "/file/ca.pem"
cert = "/file/cert.pem"
key = "/file/key.pem"
username = "fileuser"
password = "filepass"
"""


@pytest.mark.parametrize(
    "var, value, section, key, expected",
    [
        ("IP", "10.9.9.9", "reflector", "ip", "10.9.9.9"),
        ("IP6", "2001:db8::99", "reflector", "ip6", "2001:db8::99"),
        ("IP6", "", "reflector", "ip6", ""),  # set-but-empty disables IPv6
        ("ETCD_ENDPOINTS", "http://a:2379", "etcd", "endpoints", ("http://a:2379",)),
        ("ETCD_ENDPOINTS", " http://a:2379 , http://[::1]:2379,http://b.example:4001 ", "etcd", "endpoints",
         ("http://a:2379", "http://[::1]:2379", "http://b.example:4001")),
        ("ETCD_CA_CERT_FILE", "/env/ca.pem", "etcd", "ca_cert", "/env/ca.pem"),
        ("ETCD_CA_CERT_FILE", "", "etcd", "ca_cert", ""),
        ("ETCD_CERT_FILE", "/env/cert.pem", "etcd", "cert", "/env/cert.pem"),
        ("ETCD_KEY_FILE", "/env/key.pem", "etcd", "key", "/env/key.pem"),
        ("ETCD_USERNAME", "envuser", "etcd", "username", "envuser"),
        ("ETCD_PASSWORD", "envpass", "etcd", "password", "envpass"),
    ],
)
def test_env_overrides_file(write, var, value, section, key, expected):
    s = load_settings(write(BASE_FILE), environ={var: value})
    assert get(s, section, key) == expected


def test_env_without_file(no_default_file):
    s = load_settings(environ={
        "IP": "10.1.1.1", "IP6": "fd00::1", "ETCD_ENDPOINTS": "https://e1:2379,https://e2:2379",
        "ETCD_CA_CERT_FILE": "/c/ca", "ETCD_CERT_FILE": "/c/cert", "ETCD_KEY_FILE": "/c/key",
        "ETCD_USERNAME": "u", "ETCD_PASSWORD": "p",
    })
    assert s.source == "(defaults)"
    assert s.reflector == ReflectorSettings("10.1.1.1", "fd00::1")
    assert s.etcd.endpoints == ("https://e1:2379", "https://e2:2379")
    assert (s.etcd.ca_cert, s.etcd.cert, s.etcd.key, s.etcd.username, s.etcd.password) == (
        "/c/ca", "/c/cert", "/c/key", "u", "p")


def test_unrelated_env_ignored(write):
    s = load_settings(write(BASE_FILE), environ={"PATH": "/bin", "ETCD_AUTHORITY": "x", "LOG_LEVEL": "zzz"})
    assert s.reflector.ip == "10.0.0.1"


# --------------------------------------------------------------------------- errors


FILE_ERRORS = [
    # (file content, expected setting label in the message, expected fragment)
    ("[reflectr]\nip = \"10.0.0.1\"\n", "[reflectr]", "did you mean [reflector]"),
    ("[nonsense]\n", "[nonsense]", "unknown section"),
    ("ip = \"10.0.0.1\"\n", "ip", "did you mean to put it under [reflector]"),
    ("[reflector]\nipp = \"10.0.0.1\"\n", "[reflector] ipp", "did you mean [reflector] ip"),
    ("[reflector]\nendpoints = []\n", "[reflector] endpoints", "did you mean [etcd] endpoints"),
    ("[etcd]\nfoo = 1\n", "[etcd] foo", "unknown setting"),
    ("reflector = 3\n", "[reflector]", "must be a table"),
    ("[[reflector]]\nip = \"10.0.0.1\"\n", "[reflector]", "must be a table"),
    ("[reflector]\nip = 10\n", "[reflector] ip", "must be a string"),
    ("[reflector]\nip = true\n", "[reflector] ip", "a boolean"),
    ("[reflector]\nip = \"10.0.0.300\"\n", "[reflector] ip", "is not an IPv4 address"),
    ("[reflector]\nip = \"2001:db8::1\"\n", "[reflector] ip", "is an IPv6 address: IPv6 goes in [reflector] ip6"),
    ("[reflector]\nip = \"0.0.0.0\"\n", "[reflector] ip", "cannot be used"),
    ("[reflector]\nip6 = \"10.0.0.1\"\n", "[reflector] ip6", "is not an IPv6 address"),
    ("[reflector]\nip6 = \"fe80::1%eth0\"\n", "[reflector] ip6", "scoped"),
    ("[reflector]\nip6 = \"::\"\n", "[reflector] ip6", "cannot be used"),
    ("[etcd]\nendpoints = \"http://a:2379\"\n", "[etcd] endpoints", "not a single string"),
    ("[etcd]\nendpoints = [1]\n", "[etcd] endpoints", "must be a list of strings"),
    ("[etcd]\nendpoints = {a = 1}\n", "[etcd] endpoints", "must be a list of strings"),
    ("[etcd]\nendpoints = []\n", "[etcd] endpoints", "at least one"),
    ("[etcd]\nendpoints = [\"\"]\n", "[etcd] endpoints", "empty URL"),
    ("[etcd]\nendpoints = [\"127.0.0.1:2379\"]\n", "[etcd] endpoints", "not a URL"),
    ("[etcd]\nendpoints = [\"ftp://a:2379\"]\n", "[etcd] endpoints", "http:// or https://"),
    ("[etcd]\nendpoints = [\"unix://a:2379\"]\n", "[etcd] endpoints", "http:// or https://"),
    ("[etcd]\nendpoints = [\"http://a\"]\n", "[etcd] endpoints", "has no port"),
    ("[etcd]\nendpoints = [\"http://a:\"]\n", "[etcd] endpoints", "has no port"),
    ("[etcd]\nendpoints = [\"http://:2379\"]\n", "[etcd] endpoints", "has no host"),
    ("[etcd]\nendpoints = [\"http://a:0\"]\n", "[etcd] endpoints", "1 to 65535"),
    ("[etcd]\nendpoints = [\"http://a:70000\"]\n", "[etcd] endpoints", "1 to 65535"),
    ("[etcd]\nendpoints = [\"http://a:x\"]\n", "[etcd] endpoints", "1 to 65535"),
    ("[etcd]\nendpoints = [\"http://a:2379/v3\"]\n", "[etcd] endpoints", "path, query or fragment"),
    ("[etcd]\nendpoints = [\"http://a:2379?x=1\"]\n", "[etcd] endpoints", "path, query or fragment"),
    ("[etcd]\nendpoints = [\"http://u:p@a:2379\"]\n", "[etcd] endpoints", "credentials"),
    ("[etcd]\nendpoints = [\"http://::1:2379\"]\n", "[etcd] endpoints", "must be in brackets"),
    ("[etcd]\nendpoints = [\"http://2001:db8::1\"]\n", "[etcd] endpoints", "must be in brackets"),
    ("[etcd]\nendpoints = [\"http://[10.0.0.1]:2379\"]\n", "[etcd] endpoints", "not an IPv6 address"),
    ("[etcd]\nendpoints = [\"http://[::1:2379\"]\n", "[etcd] endpoints", "malformed"),
    ("[etcd]\nendpoints = [\"http://300.1.1.1:2379\"]\n", "[etcd] endpoints", "not a valid IPv4"),
    ("[etcd]\nendpoints = [\"http://bad_host!:2379\"]\n", "[etcd] endpoints", "invalid characters"),
    ("[etcd]\nendpoints = [\"http://-a-:2379\"]\n", "[etcd] endpoints", "not a valid host name"),
    ("[etcd]\nendpoints = [\"http://a :2379\"]\n", "[etcd] endpoints", "whitespace"),
    ("[etcd]\nendpoints = [\"http://a:2379\", \"http://A:2379/\"]\n", "[etcd] endpoints", "listed twice"),
    ("[etcd]\nendpoints = [\"http://a:2379\", \"https://b:2379\"]\n", "[etcd] endpoints", "mixes http"),
    ("[etcd]\nprefix = \"calico/bgp/v1\"\n", "[etcd] prefix", "must start with '/'"),
    ("[etcd]\nprefix = \"/calico bgp\"\n", "[etcd] prefix", "whitespace"),
    ("[etcd]\nprefix = \"/calico\\n/bgp\"\n", "[etcd] prefix", "control"),
    ("[etcd]\nprefix = \"/\"\n", "[etcd] prefix", "just '/'"),
    ("[etcd]\nprefix = \"/calico//bgp\"\n", "[etcd] prefix", "empty path component"),
    ("[etcd]\nprefix = 5\n", "[etcd] prefix", "must be a string"),
    ("[etcd]\nca_cert = \"ca.pem\"\n", "[etcd] ca_cert", "absolute"),
    ("[etcd]\ncert = \"/a\"\n", "[etcd] cert", "must be given together, but [etcd] key is empty"),
    ("[etcd]\nkey = \"/a\"\n", "[etcd] key", "must be given together, but [etcd] cert is empty"),
    ("[etcd]\nusername = \"u\"\n", "[etcd] username", "must be given together, but [etcd] password is empty"),
    ("[etcd]\nusername = \"u\\u0007\"\npassword = \"p\"\n", "[etcd] username", "control"),
    ("[bird]\nflavour = \"bird4\"\n", "[bird] flavour", "not one of auto, bird1, bird2, bird3"),
    ("[bird]\nflavour = \"bird\"\n", "[bird] flavour", "did you mean"),
    ("[bird]\nconfig = \"\"\n", "[bird] config", "must not be empty"),
    ("[bird]\nconfig = \"bird.conf\"\n", "[bird] config", "absolute"),
    ("[bird]\nconfig6 = \"/etc/bird/\"\n", "[bird] config6", "not a directory"),
    ("[bird]\nsocket = \"/run/bird/bird.ctl\\n\"\n", "[bird] socket", "line breaks"),
    ("[bird]\nsocket6 = \"/run/\\u0000x\"\n", "[bird] socket6", "control"),
    ("[bird]\nbinary = \"/usr/sbin/bird\\u2028\"\n", "[bird] binary", "control"),
    ("[bird]\nbinary6 = [\"/usr/sbin/bird6\"]\n", "[bird] binary6", "must be a string"),
    ("[bird]\nburst_settle_seconds = 11\n", "[bird] burst_settle_seconds", "between 0 and 10"),
    ("[bird]\nburst_max_delay_seconds = -0.5\n", "[bird] burst_max_delay_seconds", "between 0 and 10"),
    ("[bird]\nburst_settle_seconds = \"0.1\"\n", "[bird] burst_settle_seconds", "must be a number"),
    ("[log]\nlevel = \"verbose\"\n", "[log] level", "not one of debug, info, warning, error"),
    ("[log]\nlevel = \"warn\"\n", "[log] level", "did you mean 'warning'"),
    ("[log]\nlevel = 1\n", "[log] level", "must be a string"),
]


@pytest.mark.parametrize("content, label, fragment", FILE_ERRORS, ids=[e[1] + ":" + e[2] for e in FILE_ERRORS])
def test_file_errors(write, content, label, fragment):
    path = write(content)
    with pytest.raises(SettingsError) as ei:
        load_settings(path, environ={}, require_ip=False)
    msg = str(ei.value)
    assert msg.startswith(f"{path}: {label}: "), msg
    assert fragment in msg, msg
    assert ei.value.setting == label
    assert ei.value.path == path
    assert "\n" not in msg


ENV_ERRORS = [
    # (environ, variable named in the message, expected fragment)
    ({"IP": "nope"}, "IP", "is not an IPv4 address"),
    ({"IP": "10.0.0.1 "}, "IP", "is not an IPv4 address"),
    ({"IP6": "nope"}, "IP6", "is not an IPv6 address"),
    ({"ETCD_ENDPOINTS": ""}, "ETCD_ENDPOINTS", "item 1 of the comma-separated list is empty"),
    ({"ETCD_ENDPOINTS": "http://a:1,,http://b:2"}, "ETCD_ENDPOINTS", "item 2"),
    ({"ETCD_ENDPOINTS": "http://a:1,"}, "ETCD_ENDPOINTS", "item 2"),
    ({"ETCD_ENDPOINTS": "http://a:1;http://b:2"}, "ETCD_ENDPOINTS", "path, query or fragment"),
    ({"ETCD_ENDPOINTS": "http://a:1,https://b:2"}, "ETCD_ENDPOINTS", "mixes http"),
    ({"ETCD_ENDPOINTS": "http://::1:2379"}, "ETCD_ENDPOINTS", "brackets"),
    ({"ETCD_CA_CERT_FILE": "relative.pem"}, "ETCD_CA_CERT_FILE", "absolute"),
    ({"ETCD_CERT_FILE": "/a"}, "ETCD_CERT_FILE", "[etcd] key is empty"),
    ({"ETCD_KEY_FILE": "/a"}, "ETCD_KEY_FILE", "[etcd] cert is empty"),
    ({"ETCD_USERNAME": "u"}, "ETCD_USERNAME", "[etcd] password is empty"),
    ({"ETCD_PASSWORD": SECRET}, "ETCD_PASSWORD", "[etcd] username is empty"),
    ({"ETCD_PASSWORD": "x\ny", "ETCD_USERNAME": "u"}, "ETCD_PASSWORD", "control characters"),
]


@pytest.mark.parametrize("environ, var, fragment", ENV_ERRORS, ids=[e[1] + ":" + e[2] for e in ENV_ERRORS])
def test_env_errors(write, environ, var, fragment):
    path = write("[reflector]\nip = \"10.0.0.1\"\n")
    with pytest.raises(SettingsError) as ei:
        load_settings(path, environ=environ)
    msg = str(ei.value)
    assert msg.startswith(f"{path}: environment variable {var}: "), msg
    assert fragment in msg, msg
    assert ei.value.setting == f"environment variable {var}"


def test_env_error_without_default_file_names_it(no_default_file):
    with pytest.raises(SettingsError) as ei:
        load_settings(environ={"IP": "nope"})
    msg = str(ei.value)
    assert msg.startswith("environment variable IP: ")
    assert f"no settings file at {no_default_file}" in msg


def test_env_fixes_file_pair(write):
    """A pair split between the file and the environment is fine."""
    s = load_settings(write("[reflector]\nip = \"10.0.0.1\"\n[etcd]\nusername = \"u\"\n"),
                      environ={"ETCD_PASSWORD": "p"})
    assert (s.etcd.username, s.etcd.password) == ("u", "p")


def test_env_empty_unsets_pair(write):
    with pytest.raises(SettingsError, match=r": \[etcd\] username: .*\[etcd\] password is empty \(set by environment variable ETCD_PASSWORD\)$"):
        load_settings(write(BASE_FILE), environ={"ETCD_PASSWORD": ""})


# --------------------------------------------------------------------------- file access


def test_explicit_missing_file(tmp_path):
    path = str(tmp_path / "nope.toml")
    with pytest.raises(SettingsError, match=re.escape(f"{path}: no such file")):
        load_settings(path, environ={"IP": "10.0.0.1"})


def test_explicit_default_path_missing_is_an_error(no_default_file):
    with pytest.raises(SettingsError, match="no such file"):
        load_settings(no_default_file, environ={"IP": "10.0.0.1"})


def test_default_path_present_is_read(monkeypatch, write):
    path = write("[reflector]\nip = \"10.0.0.42\"\n")
    monkeypatch.setattr(settings_mod, "DEFAULT_CONFIG_PATH", path)
    s = load_settings(environ={})
    assert (s.reflector.ip, s.source) == ("10.0.0.42", path)


def test_default_path_broken_symlink_is_an_error(monkeypatch, tmp_path):
    link = tmp_path / "config.toml"
    link.symlink_to(tmp_path / "gone.toml")
    monkeypatch.setattr(settings_mod, "DEFAULT_CONFIG_PATH", str(link))
    with pytest.raises(SettingsError, match="no such file"):
        load_settings(environ={"IP": "10.0.0.1"})


def test_empty_path_argument():
    with pytest.raises(SettingsError, match="empty"):
        load_settings("", environ={"IP": "10.0.0.1"})


def test_directory(tmp_path):
    with pytest.raises(SettingsError, match="not a regular file"):
        load_settings(str(tmp_path), environ={"IP": "10.0.0.1"})


def test_device_file():
    with pytest.raises(SettingsError, match="not a regular file"):
        load_settings("/dev/zero", environ={"IP": "10.0.0.1"})


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read anything")
def test_unreadable(write):
    path = write("[reflector]\n")
    os.chmod(path, 0)
    with pytest.raises(SettingsError, match="permission denied"):
        load_settings(path, environ={"IP": "10.0.0.1"})


# --------------------------------------------------------------------------- TOML syntax / hostile input


@pytest.mark.parametrize(
    "content, where",
    [
        ("[reflector]\nip = 10.0.0.1\n", "line 2, column"),
        ("[reflector\n", "line 1"),
        ("[reflector]\nip = \"10.0.0.1\"\nip = \"10.0.0.2\"\n", ""),
        ("[reflector]\n[reflector]\n", "line 2"),
        ("[reflector]\nip = \"unterminated\n", ""),
    ],
)
def test_toml_syntax_errors(write, content, where):
    path = write(content)
    with pytest.raises(SettingsError) as ei:
        load_settings(path, environ={"IP": "10.0.0.1"})
    msg = str(ei.value)
    assert msg.startswith(f"{path}: TOML syntax error: "), msg
    assert where in msg


HOSTILE = {
    "binary": bytes(range(256)) * 64,
    "nul bytes": b"[reflector]\nip = \"10.0.0.1\"\x00\n",
    "latin-1": "[reflector]\nip6 = \"caf\xe9\"\n".encode("latin-1"),
    "huge": b"# " + b"x" * (MAX_CONFIG_BYTES + 10) + b"\n",
    "huge valid toml": b"[reflector]\n" + b"#" * MAX_CONFIG_BYTES + b"\n",
    "deep arrays": b"x = " + b"[" * 50000 + b"]" * 50000 + b"\n",
    "deep inline tables": b"x = " + b"{a=" * 50000 + b"1" + b"}" * 50000 + b"\n",
    "deep table header": b"[" + b".".join([b"a"] * 20000) + b"]\n",
    "deep dotted key": b"[etcd]\n" + b".".join([b"k"] * 20000) + b" = 1\n",
    "deep inside section": b"[etcd]\nendpoints = " + b"[" * 5000 + b"]" * 5000 + b"\n",
    "unicode section": "[\u202eRLO\u0000]\n".encode(),
    "unicode quoted section": '["r\u00e9flector\\u202e\\u0007"]\n'.encode(),
    "unicode key": '[reflector]\n"\u0131p" = "10.0.0.1"\n'.encode(),
    "emoji key": '[etcd]\n"\U0001f4a9" = 1\n'.encode(),
    "long key": ('[etcd]\n"' + "k" * 100000 + '" = 1\n').encode(),
    "long value": ('[reflector]\nip = "' + "9" * 500000 + '"\n').encode(),
    "datetime": b"[reflector]\nip = 1979-05-27T07:32:00Z\n",
    "float": b"[log]\nlevel = nan\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_files(write, name):
    path = write(HOSTILE[name])
    with pytest.raises(SettingsError) as ei:
        load_settings(path, environ={}, require_ip=False)
    msg = str(ei.value)
    assert msg.startswith(f"{path}: "), msg
    assert len(msg) < 1000, msg[:200]
    assert msg.isprintable(), msg  # no raw control characters reach the terminal
    assert "\u202e" not in msg


# --------------------------------------------------------------------------- secrets


def test_password_hidden_in_repr(write):
    s = load_settings(write(FULL_FILE), environ={})
    assert s.etcd.password == SECRET
    for text in (repr(s), str(s), repr(s.etcd), str(s.etcd), f"{s}", f"{s.etcd!r}"):
        assert SECRET not in text
        assert "password='***'" in text
    empty = load_settings(write("[reflector]\nip = \"10.0.0.1\"\n", "e.toml"), environ={})
    assert "password=''" in repr(empty)


@pytest.mark.parametrize(
    "content, environ",
    [
        # password fine, something else broken
        (f'[etcd]\nusername = "u"\npassword = "{SECRET}"\n[log]\nlevel = "x"\n', {}),
        # password without username
        (f'[etcd]\npassword = "{SECRET}"\n', {}),
        ("", {"ETCD_PASSWORD": SECRET}),
        # password of the wrong type / with control characters
        ("[etcd]\nusername = \"u\"\npassword = [\"%s\"]\n" % SECRET, {}),
        ('[etcd]\nusername = "u"\npassword = "%s\\n"\n' % SECRET, {}),
        ("", {"ETCD_USERNAME": "u", "ETCD_PASSWORD": SECRET + "\x00"}),
        # TOML syntax error on the password line
        (f'[etcd]\nusername = "u"\npassword = {SECRET}\n', {}),
        (f'[etcd]\nusername = "u"\npassword = "{SECRET}\n', {}),
        (f'[etcd]\nusername = "u"\npassword = "{SECRET}" junk\n', {}),
        # misspelled key holding the password
        (f'[etcd]\nusername = "u"\npasword = "{SECRET}"\n', {}),
    ],
)
def test_password_never_in_errors(write, content, environ):
    path = write('[reflector]\nip = "10.0.0.1"\n' + content)
    with pytest.raises(SettingsError) as ei:
        load_settings(path, environ=environ)
    assert SECRET not in str(ei.value)
    assert SECRET not in repr(ei.value)
    assert SECRET[:6] not in str(ei.value)


@pytest.mark.parametrize("value", ["2001:db8::10", "fe80::1%eth0"])
def test_an_ipv6_address_for_ip_says_where_it_goes(value):
    with pytest.raises(SettingsError, match=r"is an IPv6 address: IPv6 goes in \[reflector\] ip6"):
        load_settings(environ={"IP": value})


def test_kubernetes_datastore_from_the_environment_as_calico_spells_it(no_default_file):
    s = load_settings(None, environ={"IP": "192.0.2.10", "DATASTORE_TYPE": "kubernetes",
                                     "KUBECONFIG": "/etc/calico-routereflector/kubeconfig:/root/.kube/config"})
    assert s.datastore.type == "kubernetes"
    assert s.kubernetes.kubeconfig == "/etc/calico-routereflector/kubeconfig:/root/.kube/config"  # merged
    assert s.kubernetes.secret_namespace == "kube-system"
    with pytest.raises(SettingsError, match="DATASTORE_TYPE"):
        load_settings(None, environ={"IP": "192.0.2.10", "DATASTORE_TYPE": "consul"})


def test_etcd_endpoints_are_needed_only_by_the_etcd_datastore(tmp_path):
    from tests.tomlfile import write_settings
    path = write_settings(tmp_path / "config.toml", {"reflector": {"ip": "192.0.2.10"}, "etcd": {"endpoints": []}})
    s = load_settings(path, environ={"DATASTORE_TYPE": "kubernetes"})
    assert s.datastore.type == "kubernetes" and s.etcd.endpoints == ()
    with pytest.raises(SettingsError, match=r"\[etcd\] endpoints: needs at least one URL"):
        load_settings(path, environ={})
