"""The daemon's incremental pipeline gives exactly what the pure pipeline gives.

A seeded random walk of puts and deletes over a small key space (so keys are overwritten,
deleted and re-added often), compared after every step with components.compute on the
same keys, for both BIRD flavours.
"""

import ipaddress
import json
import random

import pytest

from rr_service import components
from rr_service.pipeline import Pipeline
from rr_service.plan import Identity
from rr_service.render import Renderer

ME = Identity(ipaddress.IPv4Address("192.0.2.10"), ipaddress.IPv6Address("2001:db8::a"))


def random_change(rng):
    n = rng.randint(0, 12)
    choices = [
        (f"host/n{n}/ip_addr_v4", lambda: rng.choice([f"192.0.2.{rng.randint(1, 30)}", "", "192.0.2.999"])),
        (f"host/n{n}/ip_addr_v6", lambda: rng.choice([f"2001:db8::{rng.randint(1, 30):x}", ""])),
        (f"host/n{n}/as_num", lambda: rng.choice(["64512", "65002", "1.10", "0"])),
        (f"host/n{n}/peer_v4/192.0.2.10", lambda: json.dumps({"ip": "192.0.2.10", "as_num": rng.choice(["64512", "65002", None])})),
        (f"host/n{n}/peer_v6/2001:db8::a", lambda: json.dumps({"ip": "2001:db8::a"})),
        ("global/peer_v4/192.0.2.10", lambda: json.dumps({"ip": "192.0.2.10", "as_num": rng.choice(["64512", 65000])})),
        ("global/peer_v6/2001:db8::a", lambda: json.dumps({"ip": "2001:db8::a"})),
        ("global/as_num", lambda: rng.choice(["64512", "65001", "x"])),
        (f"rr_v4/192.0.2.{n + 1}", lambda: json.dumps({"ip": f"192.0.2.{n + 1}", "cluster_id": rng.choice(["", "1.2.3.4"])})),
        ("rr_v4/192.0.2.10", lambda: json.dumps({"ip": "192.0.2.10", "cluster_id": rng.choice(["", "1.2.3.4", "5.6.7.8"])})),
        (f"rr_v6/2001:db8::{n + 1:x}", lambda: json.dumps({"ip": f"2001:db8::{n + 1:x}"})),
        ("rr_v6/2001:db8::a", lambda: json.dumps({"ip": "2001:db8::a", "cluster_id": "1.2.3.4"})),
    ]
    key, make = rng.choice(choices)
    return key, (None if rng.random() < 0.25 else make().encode())


@pytest.mark.parametrize("flavour", ["bird1", "bird2"])
@pytest.mark.parametrize("seed", range(5))
def test_incremental_equals_pure(flavour, seed):
    rng = random.Random(seed)
    schema = components.Schema(name="v1", prefix="/calico/bgp/v1", to_plan=components._legacy_plan)
    pipeline = Pipeline(schema, ME, Renderer(flavour=flavour))
    pipeline.reset({})
    reference = Renderer(flavour=flavour)
    raw: dict = {}
    for step in range(300):
        for _ in range(rng.choice([1, 1, 1, 3, 10])):  # sometimes several changes fold into one
            key, value = random_change(rng)
            pipeline.change(key, value)
            if value is None:
                raw.pop(key, None)
            else:
                raw[key] = value
        if rng.random() < 0.02:
            pipeline.reset(raw)
        got = pipeline.compute()
        want = components.compute(raw, ME, reference, schema)
        assert got.configs == want.configs, f"seed {seed} step {step}"
        assert got.plan == want.plan
        assert got.rejected == want.rejected
