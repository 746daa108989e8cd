"""How to reach etcd (rr_service/sources/etcd/config.py): endpoint URLs and credentials,
checked once, with errors that name the setting. No etcd needed."""

import pytest

from rr_service.sources.base import DatastoreConfigError
from rr_service.sources.etcd.config import EtcdConfig


@pytest.mark.parametrize("settings, message", [
    (dict(endpoints=()), "at least one"),
    (dict(endpoints=("http://a:2379", "https://b:2379")), "mix http:// and https://"),
    (dict(endpoints=("127.0.0.1:2379",)), "is not a URL like http://127.0.0.1:2379"),
    (dict(endpoints=("ftp://a:2379",)), "must start with http:// or https://"),
    (dict(endpoints=("http://a:99999",)), "the port must be a number from 1 to 65535"),
    (dict(endpoints=("http://a",)), "has no port"),  # the settings' rule: one rule for both
    (dict(endpoints=("https://a:2379",), cert="/c.pem"), "cert and key"),
    (dict(endpoints=("http://a:2379",), ca_cert="/ca.pem"), "ca_cert set but"),
    (dict(endpoints=("http://a:2379",), username="root"), "username and password"),
    (dict(endpoints=("http://a:2379",), timeout=0), "timeout"),
])
def test_bad_settings_name_the_setting(settings, message):
    with pytest.raises(DatastoreConfigError, match=message):
        EtcdConfig(**settings)


def test_endpoint_forms():
    config = EtcdConfig("http://192.0.2.1:2379, http://[2001:db8::1]:2379,http://Etcd.example.net:2380")
    assert config.endpoints == ("http://192.0.2.1:2379", "http://[2001:db8::1]:2379",
                                "http://Etcd.example.net:2380")
    targets = [(e.host, e.port, e.url) for e in config.parsed_endpoints()]
    assert targets == [("ipv4:192.0.2.1", 2379, "http://192.0.2.1:2379"),
                       ("ipv6:[2001:db8::1]", 2379, "http://[2001:db8::1]:2379"),
                       ("dns:///etcd.example.net", 2380, "http://etcd.example.net:2380")]


def test_password_stays_out_of_repr():
    config = EtcdConfig(("http://192.0.2.1:2379",), username="u", password="hunter2")
    assert "hunter2" not in repr(config)
    assert "hunter2" not in str(config)
