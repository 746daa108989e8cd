"""A corpus of hostile and broken etcd keys and values for the legacy `/calico/bgp/v1` data.

Each `Case` is one etcd key and its value, dropped into a realistic data set (`BASE`: two
reflectors per family, three good nodes, the global peer entries) by
tests/test_hostile_corpus.py. What a case must do:

- `REJECT`: the key is in `Snapshot.rejected` with a reason; the rendered configs are byte for
  byte those of `BASE` (plus `adds`, the sessions its valid companion keys bring).
- `ACCEPT`: the value is legitimately usable (`why` says why); it brings the sessions in `adds`
  and every good session of `BASE` is unchanged.
- `IGNORE`: not a key this reflector reads (Calico's other data); neither used nor logged.

The corpus is built by code from lists of hostile strings crossed with the places ("slots")
an etcd value or key segment can take, so a new hostile string is tried everywhere at once.
Every case has a unique, readable `id` (the pytest id).
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass

from rr_service.core.plan import Identity
from tests.v1data import j

REJECT, ACCEPT, IGNORE = "reject", "accept", "ignore"
MIB = 1024 * 1024

ME = Identity(ipaddress.IPv4Address("192.0.2.10"), ipaddress.IPv6Address("2001:db8::10"))



# The realistic data set every case is placed into. The good sessions it gives this
# reflector (192.0.2.10 / 2001:db8::10) are GOOD_SESSIONS.
BASE: dict[str, bytes] = {
    "rr_v4/192.0.2.10": j(ip="192.0.2.10", cluster_id="1.0.0.1"),
    "rr_v4/192.0.2.11": j(ip="192.0.2.11", cluster_id="1.0.0.1"),
    "rr_v6/2001:db8::10": j(ip="2001:db8::10", cluster_id="1.0.0.1"),
    "rr_v6/2001:db8::11": j(ip="2001:db8::11", cluster_id="1.0.0.1"),
    "global/as_num": b"64512",
    "global/peer_v4/192.0.2.10": j(ip="192.0.2.10"),
    "global/peer_v6/2001:db8::10": j(ip="2001:db8::10"),
    "global/node_mesh": b'{"enabled": false}',
    "host/node-a/ip_addr_v4": b"192.0.2.21",
    "host/node-a/ip_addr_v6": b"2001:db8::21",
    "host/node-b/ip_addr_v4": b"192.0.2.22",
    "host/node-b/ip_addr_v6": b"",
    "host/node-b/as_num": b"65001",  # eBGP: a plain session, no rr client
    "host/node-c/ip_addr_v4": b"192.0.2.23",
    "host/node-c/ip_addr_v6": b"2001:db8::23",
    "host/node-c/peer_v4/192.0.2.10": j(ip="192.0.2.10", as_num="64512"),
}
GOOD_SESSIONS = frozenset({
    "Mesh_192_0_2_11", "Client_192_0_2_21", "Client_192_0_2_22", "Client_192_0_2_23",
    "Mesh_2001_db8__11", "Client_2001_db8__21", "Client_2001_db8__23",
})


@dataclass(frozen=True)
class Case:
    id: str
    key: str
    value: bytes
    expect: str  # REJECT | ACCEPT | IGNORE
    why: str = ""  # required for ACCEPT and IGNORE: why this is not hostile after all
    adds: frozenset = frozenset()  # sessions this case adds to BASE's
    extra: tuple = ()  # (key, value) companions, all valid, placed with the case
    reason: str = ""  # a part of the rejection reason, where it matters

    def data(self) -> dict[str, bytes]:
        raw = dict(BASE)
        raw.update(dict(self.extra))
        raw[self.key] = self.value
        return raw


CASES: list[Case] = []
_IDS: set = set()


def _short(text: str, limit: int = 40) -> str:
    shown = text.encode("unicode_escape").decode("ascii")
    return shown if len(shown) <= limit else f"{shown[:limit - 12]}...{len(text)}chars"


def add(id: str, key: str, value: bytes, expect: str = REJECT, **kw) -> None:
    assert id not in _IDS, f"duplicate corpus id {id}"
    if expect in (ACCEPT, IGNORE):
        assert kw.get("why"), f"{id}: an accepted or ignored case must say why"
    kw["adds"] = frozenset(kw.get("adds", ()))
    _IDS.add(id)
    CASES.append(Case(id, key, value, expect, **kw))


# ------------------------------------------------------------------ hostile strings

# Attempts to get BIRD syntax, template syntax or shell syntax into a config. None of them is
# an address, an AS number, a dotted quad or a host name, in any slot.
INJECTIONS = [
    "192.0.2.30; protocol bgp evil { neighbor 192.0.2.66 as 1; }",
    "192.0.2.30;",
    "192.0.2.30 }",
    "192.0.2.30 {",
    "}",
    "{",
    "};",
    '";',
    '" export all; "',
    "'192.0.2.30'",
    'include "/etc/passwd";',
    "192.0.2.30\ninclude \"/etc/passwd\";",
    "192.0.2.30\nprotocol static { route 0.0.0.0/0 blackhole; }",
    "192.0.2.30\rprotocol kernel { export all; }",
    "192.0.2.30\r\n}",
    "192.0.2.30 # comment",
    "192.0.2.30#",
    "# 192.0.2.30",
    "192.0.2.30 /* comment */",
    "/* */192.0.2.30",
    "192.0.2.30 as 1",
    "protocol bgp",
    "rr client",
    "export all",
    "import filter { accept; }",
    "filter evil { if net ~ 0.0.0.0/0 then accept; }",
    "where net ~ [ 0.0.0.0/0+ ]",
    "define EVIL = 1;",
    "{{ router_id }}",
    '{% include "bird.conf.j2" %}',
    "${IP}",
    "$(id)",
    "`id`",
    "192.0.2.30\x00",
    "\x00",
    "192.0.2.30\x1b[2J",
    "\x7f",
    "192.0.2.30\x0c; }",
    "192.0.2.30\x08\x08\x08",
    "\\n}",
]

# Unicode look-alikes and invisible characters around an otherwise valid value.
UNICODE = [
    "\u202e192.0.2.30",  # right-to-left override
    "192.0.2.30\u202e",
    "192.0.2\u200b.30",  # zero-width space
    "\u200d192.0.2.30",  # zero-width joiner
    "\ufeff192.0.2.30",  # byte order mark
    "192\uff0e0\uff0e2\uff0e30",  # fullwidth full stops
    "192\u30020\u30022\u300230",  # ideographic full stops
    "\uff11\uff19\uff12.\uff10.\uff12.\uff13\uff10",  # fullwidth digits
    "\u0661\u0669\u0662.\u0660.\u0662.\u0663\u0660",  # Arabic-Indic digits
    "\U0001d7cf\U0001d7d7\U0001d7d0.\U0001d7ce.\U0001d7d0.\U0001d7d1\U0001d7ce",  # math bold
    "192.0.2.3O",  # letter O
    "l92.0.2.30",  # letter l
    "192\u00b70.2.30",  # middle dot
    "192.0.2.30\u0301",  # combining accent
    "\U0001f4a9",
]

# Whitespace Python's str.strip() removes: padding, not part of the value. Calico's tools and
# `etcdctl put` readily leave a trailing newline.
PADDING = [" {}", "{} ", "\t{}\t", "{}\n", "{}\r\n", "\n{}\n", "{}\u00a0", "{}\u2028", "\u3000{}"]

# ------------------------------------------------------------------ node addresses

V4_SLOT, V6_SLOT = "host/hostile/ip_addr_v4", "host/hostile/ip_addr_v6"

BAD_V4 = [
    "2001:db8::30", "::ffff:192.0.2.30", "192.0.2.30/24", "192.0.2.30/32", "192.0.2.010",
    "192.000.002.030", "0192.0.2.30", "192.0.2", "192.0.2.30.1", "256.0.2.30", "192.0.2.-1",
    "-192.0.2.30", "0xc0.0.2.30", "0xc000021e", "3221226014", "030000001036", "0.0.0.0",
    "224.0.0.5", "239.255.255.250", "192.0.2.30:179", "[192.0.2.30]", "192.0.2.30%eth0",
    "192.0.2.30 192.0.2.31", "192.0.2.30,192.0.2.31", "localhost", "node-a.example.com",
    "192.0.2.30/", "192.0.2.30 /24", "1.2.3.4.5.6.7.8", "192..2.30", ".192.0.2.30", "null",
    '"192.0.2.30"', '{"ip": "192.0.2.30"}', "[\"192.0.2.30\"]", "true",
]
BAD_V6 = [
    "192.0.2.30", "fe80::1%eth0", "fe80::1%1", "2001:db8::30%eth0", "2001:db8::30%eth0; }",
    "2001:db8::30%", "fe80::1", "fe80::abcd:1", "::", "ff02::2", "ff05::1:3", "2001:db8::30/64",
    "2001:db8::/32", "2001:db8:::30", "2001:db8::30::1", "2001:0db8:0000:0000:0000:0000:0000:00030",
    "[2001:db8::30]", "[2001:db8::30]:179", "2001:db8::g", "2001:db8:0:0:0:0:0:0:30", ":::",
    "::ffff:192.0.2.300", "2001:db8::30 2001:db8::31", "2001:db8::30;", '"2001:db8::30"',
]
for text in BAD_V4:
    add(f"node-v4:{_short(text)}", V4_SLOT, text.encode())
for text in BAD_V6:
    add(f"node-v6:{_short(text)}", V6_SLOT, text.encode())
for text in INJECTIONS + UNICODE:
    add(f"node-v4:{_short(text)}", V4_SLOT, text.encode())
for text in ("2001:db8::30\n}", "2001:db8::30 # x", "\u202e2001:db8::30", "2001:db8\uff1a:30", "2001:db8::3O"):
    add(f"node-v6:{_short(text)}", V6_SLOT, text.encode())
add("node-v4:not-utf8", V4_SLOT, b"192.0.2.\xff", reason="not UTF-8")
add("node-v4:utf16", V4_SLOT, "192.0.2.30".encode("utf-16"), reason="not UTF-8")
add("node-v4:latin1", V4_SLOT, "192.0.2.30\xe9".encode("latin-1"), reason="not UTF-8")
add("node-v4:1MiB", V4_SLOT, b"1" * MIB, reason="bytes, more than")
add("node-v4:1MiB-padding", V4_SLOT, b" " * MIB + b"192.0.2.30", reason="bytes, more than")
add("node-v4:4097-bytes", V4_SLOT, b" " * 4087 + b"192.0.2.30", reason="bytes, more than")
add("node-v6:1MiB", V6_SLOT, b"2001:db8::30" + b"\n" * MIB, reason="bytes, more than")
add("node-v6:link-local", "host/hostile/ip_addr_v6", b"fe80::30", reason="link-local")

for pad in PADDING:
    add(f"node-v4:padded:{_short(pad)}", V4_SLOT, pad.format("192.0.2.30").encode(), ACCEPT,
        why="whitespace around an address is padding (etcdctl put leaves a newline); the "
            "parsed address is what is rendered", adds={"Client_192_0_2_30"})
add("node-v4:4096-bytes", V4_SLOT, b" " * 4086 + b"192.0.2.30", ACCEPT,
    why="exactly the 4096-byte limit: still a value", adds={"Client_192_0_2_30"})
add("node-v4:empty", V4_SLOT, b"", ACCEPT, why="Calico writes an empty value for 'no address'")
add("node-v4:blank", V4_SLOT, b" \n", ACCEPT, why="blank is empty: no address")
add("node-v4:loopback", V4_SLOT, b"127.0.0.1", reason="loopback")
add("node-v4:loopback-net", V4_SLOT, b"127.1.2.3", reason="loopback")
add("node-v4:broadcast", V4_SLOT, b"255.255.255.255", reason="broadcast")
add("node-v4:this-network", V4_SLOT, b"0.1.2.3", reason="unspecified")
add("node-v4:link-local", V4_SLOT, b"169.254.0.30", reason="link-local")
add("node-v6:padded", V6_SLOT, b" 2001:db8::30\n", ACCEPT, why="padding, as for IPv4",
    adds={"Client_2001_db8__30"})
add("node-v6:upper-case", V6_SLOT, b"2001:DB8::30", ACCEPT,
    why="another spelling of 2001:db8::30; rendered in canonical form", adds={"Client_2001_db8__30"})
add("node-v6:uncompressed", V6_SLOT, b"2001:0db8:0000:0000:0000:0000:0000:0030", ACCEPT,
    why="another spelling of 2001:db8::30; rendered in canonical form", adds={"Client_2001_db8__30"})
for text in ("::ffff:192.0.2.30", "::ffff:127.0.0.1", "::ffff:224.0.0.1", "::ffff:0.0.0.0", "::ffff:c000:20a"):
    add(f"node-v6:ipv4-mapped:{_short(text)}", V6_SLOT, text.encode(), reason="IPv4-mapped")
add("node-v6:ipv4-compatible", V6_SLOT, b"::192.0.2.30", reason="IPv4-compatible")
add("node-v6:loopback", V6_SLOT, b"::1", reason="loopback")

# ------------------------------------------------------------------ AS numbers

AS_SLOTS = {"node-as": "host/hostile/as_num", "global-as": "global/as_num"}
BAD_AS = [
    "0", "-0", "-1", "4294967296", "4294967297", "99999999999", "18446744073709551616",
    "00000000064512", "1e3", "6.4512e4", "1E5", "0x10", "0o17", "0b1", "+64512", "- 1", "64_512",
    "64,512", "64 512", "\uff16\uff14\uff15\uff11\uff12", "\u0666\u0664\u0665\u0661\u0662",
    "\U0001d7d4\U0001d7d2\U0001d7d3\U0001d7cf\U0001d7d0", "64512\u200b", "AS64512", "as 64512",
    "64512;", "64512 }", "64512\nlocal as 1;", "NaN", "Infinity", "-Infinity", "null", "true",
    "false", "[]", "[64512]", "{}", '{"as_num": 64512}', '"64512', '"64512"x', '"abc"', '"0"',
    '"4294967296"', '"1.65536"', "65536.0", "1.65536", "65535.65536", "0.0", "1.2.3", ".5", "5.",
    "1..2", "64512.", "\x00", "64512\x00", "١٢٣",
]
for slot, key in AS_SLOTS.items():
    for text in BAD_AS + INJECTIONS[:12]:
        add(f"{slot}:{_short(text)}", key, text.encode())
    add(f"{slot}:1MiB", key, b"6" * MIB, reason="bytes, more than")
    add(f"{slot}:not-utf8", key, b"64512\xff", reason="not UTF-8")
# Accepted spellings of 64512, so the global AS (and every good session) stays the same.
for text, why in [
    (" 64512 ", "padding"), ("64512\n", "padding (etcdctl put)"), ('"64512"', "a JSON string, as some tools write it"),
    ("064512", "a decimal number with a leading zero: still 64512, no octal reading anywhere"),
    ("0.64512", "asdot (RFC 5396): 0.64512 is 64512"), ('" 64512 "', "a padded JSON string"),
]:
    add(f"global-as:ok:{_short(text)}", "global/as_num", text.encode(), ACCEPT, why=why)
for text, why in [
    ("1.10", "asdot 1.10 = 65546"), ("65535.65535", "asdot maximum = 4294967295"),
    ("4294967295", "the largest 4-byte AS"), ("1", "the smallest AS"),
    ("64512.0", "asdot 64512.0 = 4227858432: what asdot means, not a float"),
    ("", "empty: no AS of its own (the global AS applies)"),
]:
    add(f"node-as:ok:{_short(text)}", "host/hostile/as_num", text.encode(), ACCEPT,
        why=why + "; the node has no address here, so no session")

# ------------------------------------------------------------------ JSON values

JSON_SLOTS = {  # slot: (key, the value's valid ip, sessions the entry adds when accepted)
    "rr-v4": ("rr_v4/192.0.2.12", "192.0.2.12", {"Mesh_192_0_2_12"}),
    "rr-v6": ("rr_v6/2001:db8::12", "2001:db8::12", {"Mesh_2001_db8__12"}),
    "global-peer": ("global/peer_v4/192.0.2.99", "192.0.2.99", set()),
    # node-a is a good node: a bad peer entry of its own must not cost it its session
    "node-peer": ("host/node-a/peer_v4/192.0.2.10", "192.0.2.10", set()),
    "node-peer-v6": ("host/node-a/peer_v6/2001:db8::10", "2001:db8::10", set()),
}
BAD_JSON = [
    b"", b" ", b"{", b"}", b"{broken", b'{"ip": }', b'{"ip": "IP",}', b"{'ip': 'IP'}",
    b'{ip: "IP"}', b'{"ip": "IP"} x', b'{"ip": "IP"}{"ip": "IP"}', b"null", b"true", b"false",
    b"0", b"-1", b"1.5", b"1e400", b"NaN", b"[]", b'[{"ip": "IP"}]', b'"IP"', b"IP", b"{}",
    b'{"ip": null}', b'{"ip": true}', b'{"ip": 3221226000}', b'{"ip": ["IP"]}',
    b'{"ip": {"ip": "IP"}}', b'{"IP": "IP"}', b'{"ip ": "IP"}', b'{"ip": "IP", "ip": "IP"}',
    b'{"ip": "IP", "ip": "192.0.2.13"}', b'{"ip": "IP", "as_num": 1, "as_num": 2}',
    b'\xef\xbb\xbf{"ip": "IP"}', b"\xff\xfe", b'{"ip": "IP\\u0000"}', b'{"ip": "\\ud800"}',
    b'{"ip": "IP"} // comment', b'/* c */ {"ip": "IP"}', b'{"ip": "IP" # c\n}', b"[" * 3000,
    b"[" * 2000 + b"]" * 2000, b'{"a":' * 1500 + b"1" + b"}" * 1500, b'{"ip": "192.0.2.13"}',
    b'{"ip": "IP", "cluster_id": "1.2.3.4; }", "as_num": "1; }"}', b'{"ip": "IP\\n}"}',
    b'{"ip": "IP;"}', b'{"ip": "IP/32"}', b'{"ip": "IP%eth0"}',
]
for slot, (key, ip, adds) in JSON_SLOTS.items():
    for raw in BAD_JSON:
        value = raw.replace(b"IP", ip.encode())
        add(f"{slot}:{_short(value.decode('utf-8', 'replace'))}", key, value)
    add(f"{slot}:utf16", key, json.dumps({"ip": ip}).encode("utf-16"), reason="not UTF-8")
    add(f"{slot}:1MiB", key, json.dumps({"ip": ip, "pad": "x" * MIB}).encode(), reason="bytes, more than")
    add(f"{slot}:1MiB-blank", key, b" " * MIB, reason="bytes, more than")
    # the address field itself, with each family's wrong values
    family = 6 if ":" in ip else 4
    for text in (BAD_V6 if family == 6 else BAD_V4[:20]) + INJECTIONS[:8] + UNICODE[:6]:
        add(f"{slot}:ip={_short(text)}", key, j(ip=text))
    add(f"{slot}:ok:extra-fields", key, j(ip=ip, extra=[1, {"x": None}], nested={"a": {"b": []}}),
        ACCEPT, why="fields the reflector does not read are ignored, as Calico's own tools do",
        adds=adds)
    add(f"{slot}:ok:padded-json", key, b"  \n" + j(ip=ip) + b"\n", ACCEPT,
        why="whitespace around JSON is JSON", adds=adds)
    escaped = ip.replace(".", "\\u002e").replace(":", "\\u003a")
    add(f"{slot}:ok:json-escape", key, ('{"ip": "' + escaped + '"}').encode(),
        ACCEPT, why="\\u002e is how JSON may spell '.': the decoded text is the address", adds=adds)
    add(f"{slot}:ok:padded-ip", key, j(ip=f" {ip}\n"), ACCEPT, why="padding inside the string", adds=adds)

# AS numbers inside a node's own peer entry (node-a: must keep its session, same lines)
for value in [0, -1, 2**32, 2**64, 1.5, 64512.0, 1e3, True, False, [], [64512], {}, {"n": 1},
              "0", "abc", "64512;", "1e3", "0x10", "\uff16\uff14\uff15\uff11\uff12", "-1", "NaN",
              "64512 } protocol bgp x {", "64512\nlocal as 1;", "65536.1", "1.65536"]:
    add(f"node-peer:as_num={_short(repr(value))}", "host/node-a/peer_v4/192.0.2.10",
        j(ip="192.0.2.10", as_num=value))
for raw in (b"NaN", b"Infinity", b"-Infinity", b"1e999", b"64512" * 800):
    add(f"node-peer:as_num-raw={_short(raw.decode())}", "host/node-a/peer_v4/192.0.2.10",
        b'{"ip": "192.0.2.10", "as_num": ' + raw + b"}")
for value, why in [(None, "null: no AS, the node's applies"), ("", "empty: no AS"),
                   (64512, "the same AS the session already has"), ("64512", "as a string"),
                   ("0.64512", "asdot for 64512"), (" 64512 ", "padding")]:
    add(f"node-peer:ok:as_num={_short(repr(value))}", "host/node-a/peer_v4/192.0.2.10",
        j(ip="192.0.2.10", as_num=value), ACCEPT, why=why + "; node-a's session is unchanged")

# Cluster ids (on another reflector's entry; rejected means no mesh session to it)
for value in ["1.2.3", "1.2.3.4.5", "2001:db8::1", "1.2.3.4/32", "01.2.3.4", "1.2.3.256", "16843009",
              16843009, 1.5, True, False, [], ["1.2.3.4"], {}, {"id": "1.2.3.4"},
              "1.2.3.4; rr client", "1.2.3.4\n}", "\uff11.\uff12.\uff13.\uff14", "1.2.3.4%eth0",
              "0x01020304", "1.2.3.4 # x", "\u202e1.2.3.4", "localhost", "1.2.3.4 1.2.3.5",
              "1.2.3.4 }; protocol bgp x {", "1.2.3.4\x00", "1.2.3.4/* */"]:
    add(f"cluster-id:{_short(repr(value))}", "rr_v4/192.0.2.12", j(ip="192.0.2.12", cluster_id=value),
        reason="cluster_id")
for value, why in [(None, "null: no cluster id"), ("", "empty: no cluster id"),
                   (" 1.2.3.4 ", "padding"), ("0.0.0.0", "a dotted quad BIRD accepts")]:
    add(f"cluster-id:ok:{_short(repr(value))}", "rr_v4/192.0.2.12", j(ip="192.0.2.12", cluster_id=value),
        ACCEPT, why=why + "; only this reflector's own cluster id is rendered", adds={"Mesh_192_0_2_12"})

# ------------------------------------------------------------------ keys

BAD_NAMES = [
    "evil;", "a}b", "a{b", "a b", " a", "a ", "a\nb", "a\rb", "a\tb", "a\x00b", "a\x1bb", "a#b",
    'a"b', "a'b", "a;b", "a*b", "..", ".", "-a", "a-", "_a", "a_", ".a", "a.", "n\u00f6de",
    "\uff41", "\u0430", "a\u202eb", "a\u200bb", "a" * 254, "{{x}}", "a$b", "a`b", "a\\b", "a%b",
    "a:b", "a,b", "a@b", "", "a\u2028b",
]
for name in BAD_NAMES:
    add(f"key:host-name={_short(name)}", f"host/{name}/ip_addr_v4", b"192.0.2.40", reason="host name")
for name in ("a\nb", "..", "evil;", "a b"):
    add(f"key:host-name-as={_short(name)}", f"host/{name}/as_num", b"65001", reason="host name")
    add(f"key:host-name-peer={_short(name)}", f"host/{name}/peer_v4/192.0.2.10", j(ip="192.0.2.10"),
        reason="host name")

BAD_KEYS = [
    # (key, value) -- odd paths of the BGP keys
    ("host//ip_addr_v4", b"192.0.2.40"), ("host/a//ip_addr_v4", b"192.0.2.40"),
    ("host/a/b/ip_addr_v4", b"192.0.2.40"), ("host/a/b/c/ip_addr_v6", b"2001:db8::40"),
    ("host/a/ip_addr_v4/", b"192.0.2.40"), ("host/a/ip_addr_v4/extra", b"192.0.2.40"),
    ("host/a/ip_addr_v4//", b"192.0.2.40"), ("host/a/as_num/", b"65001"),
    ("host/a/peer_v4", j(ip="192.0.2.10")), ("host/a/peer_v4/", j(ip="192.0.2.10")),
    ("host/a/peer_v4/192.0.2.10/", j(ip="192.0.2.10")), ("host/a/peer_v4/192.0.2.10/x", j(ip="192.0.2.10")),
    ("host/a/peer_v4//192.0.2.10", j(ip="192.0.2.10")), ("host/a/peer_v4/192.0.2.0/24", j(ip="192.0.2.0/24")),
    ("host/a/b/peer_v4/192.0.2.10", j(ip="192.0.2.10")), ("host/../ip_addr_v4", b"192.0.2.40"),
    ("host/a/../ip_addr_v4", b"192.0.2.40"), ("host/a/./ip_addr_v4", b"192.0.2.40"),
    ("rr_v4/192.0.2.0/24", j(ip="192.0.2.0/24")), ("rr_v4/", j(ip="")), ("rr_v4", j(ip="192.0.2.12")),
    ("rr_v6", j(ip="2001:db8::12")), ("rr_v4//192.0.2.12", j(ip="192.0.2.12")),
    ("rr_v4/192.0.2.12/", j(ip="192.0.2.12")), ("rr_v4/../192.0.2.12", j(ip="192.0.2.12")),
    ("rr_v4/./192.0.2.12", j(ip="192.0.2.12")), ("/rr_v4/192.0.2.12", j(ip="192.0.2.12")),
    ("//rr_v4/192.0.2.12", j(ip="192.0.2.12")), ("global/peer_v4", j(ip="192.0.2.99")),
    ("global/peer_v4/", j(ip="192.0.2.99")), ("global/peer_v4/192.0.2.99/", j(ip="192.0.2.99")),
    ("global//peer_v4/192.0.2.99", j(ip="192.0.2.99")), ("global/as_num/", b"65001"),
    ("global/as_num/x", b"65001"), ("/global/as_num", b"65001"), ("global/peer_v4/192.0.2.99/as_num", b"1"),
    ("rr_v4/" + "1" * 600, j(ip="192.0.2.12")), ("host/" + "a" * 600 + "/ip_addr_v4", b"192.0.2.40"),
    ("host/a/peer_v4/" + "9" * 1000, j(ip="192.0.2.10")), ("rr_v4/" + "x" * MIB, j(ip="192.0.2.12")),
    # hostile address segments
    ("rr_v4/192.0.2.12\x00", j(ip="192.0.2.12")), ("rr_v4/192.0.2.12;", j(ip="192.0.2.12")),
    ("rr_v4/192.0.2.12 }", j(ip="192.0.2.12")), ("rr_v4/192.0.2.012", j(ip="192.0.2.12")),
    ("rr_v4/192.0.2.12%eth0", j(ip="192.0.2.12")), ("rr_v6/fe80::1%eth0", j(ip="fe80::1%eth0")),
    ("rr_v6/fe80::1", j(ip="fe80::1")), ("rr_v4/2001:db8::12", j(ip="2001:db8::12")),
    ("rr_v6/192.0.2.12", j(ip="192.0.2.12")), ("global/peer_v4/2001:db8::10", j(ip="2001:db8::10")),
    ("global/peer_v6/192.0.2.10", j(ip="192.0.2.10")), ("host/a/peer_v6/192.0.2.10", j(ip="192.0.2.10")),
    ("host/a/peer_v4/2001:db8::10", j(ip="2001:db8::10")),
    ("rr_v4/\uff11\uff19\uff12.0.2.12", j(ip="192.0.2.12")), ("rr_v4/192.0.2.12\u202e", j(ip="192.0.2.12")),
    ("rr_v4/192\uff0e0.2.12", j(ip="192.0.2.12")), ("rr_v4/192.0.2.12\nprotocol", j(ip="192.0.2.12")),
    ("rr_v4/192.0.2.13", j(ip="192.0.2.12")),  # key and value disagree
    ("global/peer_v4/192.0.2.10/24", j(ip="192.0.2.10")), ("rr_v4/\udcff", j(ip="192.0.2.12")),
    ("host/\udcff/ip_addr_v4", b"192.0.2.40"),
]
for key, value in BAD_KEYS:
    add(f"key:{_short(key, 48)}", key, value)

IGNORED_KEYS = [
    ("global/loglevel", b"debug; }", "Calico's BGP log level: not read by the reflector"),
    ("host/a/rr_cluster_id", b"1.2.3.4; }", "Calico 2.x per-node cluster id: not read (the rr_v4 entry's is)"),
    ("host/a/workload/k8s/x/endpoint/y", b"{not ours", "not a BGP key"),
    ("RR_V4/192.0.2.12", j(ip="192.0.2.12"), "etcd keys are case-sensitive; Calico never writes this"),
    ("host/a/IP_ADDR_V4", b"192.0.2.40", "etcd keys are case-sensitive; Calico never writes this"),
    ("host/a/ip_addr_v5", b"192.0.2.40", "no such family"),
    ("rr_v5/192.0.2.12", j(ip="192.0.2.12"), "no such family"),
    ("", b"192.0.2.40", "the prefix itself"), ("/", b"{", "no segment is a BGP key"),
    ("host", b"x", "no node"), ("global", b"x", "no setting"), ("host/a", b"x", "no per-node key"),
    ("host/a/", b"x", "no per-node key"), ("   ", b"}", "no BGP key"),
    ("host/a/ip_addr_v4\x00", b"192.0.2.40", "not one of the key names: etcd keys are exact strings"),
    ("custom_filters/v4/x", b'filter x { accept; }', "Calico's custom filters are not rendered"),
]
for key, value, why in IGNORED_KEYS:
    add(f"ignored:{_short(key) or 'empty'}", key, value, IGNORE, why=why)

ACCEPTED_KEYS = [
    ("rr_v4/192.0.2.12 ", j(ip="192.0.2.12"), {"Mesh_192_0_2_12"}, "padding in the key's address is stripped like a value's"),
    ("rr_v6/2001:DB8::12", j(ip="2001:db8::12"), {"Mesh_2001_db8__12"}, "another spelling of 2001:db8::12"),
    ("rr_v6/2001:db8:0:0:0:0:0:12", j(ip="2001:db8::12"), {"Mesh_2001_db8__12"}, "another spelling of 2001:db8::12"),
    # the same address as an existing entry, in another spelling: one session, and the
    # entry that wins does not depend on etcd's key order (BASE's sorts first)
    ("rr_v6/2001:DB8::11", j(ip="2001:db8::11", cluster_id="9.9.9.9"), set(),
     "a second entry for reflector 2001:db8::11: still one mesh session"),
    ("rr_v4/192.0.2.10 ", j(ip="192.0.2.10", cluster_id="9.9.9.9"), set(),
     "a second entry for this reflector: 1.0.0.1 < 9.9.9.9, so the cluster id stays 1.0.0.1 whatever the key order"),
    ("global/peer_v4/192.0.2.10 ", j(ip="192.0.2.10", as_num=1), set(),
     "a second global peer entry for this reflector: the one without an AS sorts first and wins"),
    ("global/peer_v6/2001:DB8::10", j(ip="2001:db8::10", as_num=1), set(),
     "a second global peer entry for this reflector: the one without an AS sorts first and wins"),
    ("host/include/ip_addr_v4", b"192.0.2.40", {"Client_192_0_2_40"}, "a BIRD keyword as a node name only reaches a comment"),
    ("host/protocol/ip_addr_v4", b"192.0.2.41", {"Client_192_0_2_41"}, "a BIRD keyword as a node name only reaches a comment"),
    ("host/" + "a" * 253 + "/ip_addr_v4", b"192.0.2.42", {"Client_192_0_2_42"}, "253 characters: the longest host name"),
    ("host/A.B-c_d/ip_addr_v4", b"192.0.2.43", {"Client_192_0_2_43"}, "letters, digits, '.', '-', '_': a valid Calico node name"),
]
for key, value, adds, why in ACCEPTED_KEYS:
    add(f"key:ok:{_short(key, 48)}", key, value, ACCEPT, why=why, adds=adds)

# A node with a hostile AS and a valid address: rejected AS, the node still peers with the
# global AS (its address is fine); the session it brings is in `adds`.
for text in ("0", "4294967296", "64512; }", "\uff16\uff14\uff15\uff11\uff12", "1.65536"):
    add(f"node-as-with-address:{_short(text)}", "host/hostile/as_num", text.encode(),
        extra=(("host/hostile/ip_addr_v4", b"192.0.2.44"),), adds={"Client_192_0_2_44"})
