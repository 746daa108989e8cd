"""The security tests' secret search catches a leak however it was escaped (no root needed).

The test password holds `"'$\\ #` on purpose, so that repr(), JSON and shell quoting each
print it differently; the search must still find it, through its random part."""

from __future__ import annotations

import json
import secrets
import shlex

import pytest

from tests.security.security_helpers import assert_no_secrets, secret_needles

PASSWORD = "pw-" + secrets.token_urlsafe(18) + "\"'$\\ #"
PEM = ("-----BEGIN PRIVATE KEY-----\n" + "\n".join(secrets.token_urlsafe(48)[:64] for _ in range(3))
       + "\n-----END PRIVATE KEY-----\n")

LEAKS = {
    "as is": lambda s: s,
    "repr": repr,
    "JSON": json.dumps,
    "JSON in an object": lambda s: json.dumps({"password": s}),
    "shell-quoted": shlex.quote,
    "unicode-escaped": lambda s: s.encode("unicode_escape").decode(),
    "TOML basic string": lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"',
}


@pytest.mark.parametrize("secret", [PASSWORD, PEM], ids=["password", "PEM key"])
@pytest.mark.parametrize("how", list(LEAKS))
def test_an_escaped_secret_is_found(secret, how):
    text = f"2026-01-01 DEBUG connecting with {LEAKS[how](secret)} to etcd"
    with pytest.raises(AssertionError, match="a secret"):
        assert_no_secrets({"daemon log": text}, [secret])


def test_clean_texts_pass_and_the_random_part_is_a_needle():
    assert assert_no_secrets({"a": "nothing here", "b": "pw- and ***"}, [PASSWORD, PEM]) == 2
    assert any(len(n) >= 24 and n in PASSWORD and n != PASSWORD for n in secret_needles(PASSWORD))
