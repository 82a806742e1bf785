"""The serving policy (keys, roles, encryption), in-process and fast (masking:
tests/test_masking.py; the prediction log: tests/test_audit_log.py)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from aiops.runtime.policy import KEY_HELP, Access, PolicyError, load_access, load_cipher, parse_key

ROLES = {"scorer": ["predict", "explain", "metadata"], "auditor": ["audit", "metadata", "metrics"],
         "admin": ["admin"]}
SEC = {"roles": ROLES, "key_source": "env"}
KEY = "k" * 64


# ---------------------------------------------------------------- keys and roles
K1, K2, K3 = ("key-one-" + "a" * 32, "key-two-" + "b" * 32, "key-3-" + "c" * 32)


def test_keys_from_env_map_to_roles_and_permissions():
    acc = load_access(SEC, {"AIOPS_API_KEYS": f"{K1}:scorer, {K2}:auditor,{K3}:admin"})
    assert not acc.open
    assert acc.source == "3 API keys from environment variable AIOPS_API_KEYS"
    assert acc.check(K1, "predict") == 0
    assert acc.check(K1, "metrics") == 403
    assert acc.check(K2, "metrics") == 0
    assert acc.check(K2, "predict") == 403
    assert acc.check(K3, "jobs") == 0  # admin grants everything
    assert acc.check(None, "predict") == 401
    assert acc.check("", "predict") == 401
    assert acc.check("nope", "predict") == 401
    assert acc.check(K1[:-1], "predict") == 401
    assert acc.role_of(K2) == "auditor"


def test_a_key_may_contain_colons():
    key = "a:b:c:" + "d" * 32
    acc = load_access(SEC, {"AIOPS_API_KEYS": f"{key}:scorer"})
    assert acc.check(key, "predict") == 0


def test_no_keys_means_open_access_said_loudly_when_no_role_is_defined():
    acc = load_access({"key_source": "env"}, {})
    assert acc.open and acc.required is None and not acc.insecure_dev
    assert acc.check(None, "admin") == 0
    assert acc.source == ("no API keys configured (environment variable AIOPS_API_KEYS): OPEN ACCESS, "
                          "every route is allowed without a key")


def test_unknown_role_is_refused_with_did_you_mean():
    with pytest.raises(PolicyError, match=re.escape(
            "environment variable AIOPS_API_KEYS: key 1 has role 'scorr', which serving.json does not define; "
            "did you mean 'scorer'? (roles: admin, auditor, scorer)")):
        load_access(SEC, {"AIOPS_API_KEYS": f"{K1}:scorr"})


def test_malformed_key_entry_names_its_position_not_the_key():
    with pytest.raises(PolicyError) as exc:
        load_access(SEC, {"AIOPS_API_KEYS": f"{K1}:scorer,secretwithoutrole"})
    assert str(exc.value) == ("AIOPS_API_KEYS: entry 2 is not written as KEY:ROLE "
                              "(expected e.g. AIOPS_API_KEYS='key1:scorer,key2:auditor')")
    assert "secretwithoutrole" not in str(exc.value)


def test_keys_from_a_json_file(tmp_path: Path):
    f = tmp_path / "keys.json"
    f.write_text(json.dumps({K2: "auditor"}))
    acc = load_access({**SEC, "key_source": "file"}, {"AIOPS_API_KEYS_FILE": str(f)})
    assert acc.check(K2, "audit") == 0 and acc.source == f"1 API key from file {f}"
    f.write_text(json.dumps([{"key": K1, "role": "scorer"}]))
    assert load_access({**SEC, "key_source": "file"}, {"AIOPS_API_KEYS_FILE": str(f)}).check(K1, "explain") == 0
    f.write_text("[1, 2]")
    with pytest.raises(PolicyError, match=re.escape(f"the API key file {f} must hold")):
        load_access({**SEC, "key_source": "file"}, {"AIOPS_API_KEYS_FILE": str(f)})


def test_unknown_permission_in_roles_is_refused():
    with pytest.raises(PolicyError, match=re.escape("serving.json security.roles.x grants unknown permissions "
                                                    "['fly']; valid: predict, explain")):
        load_access({"roles": {"x": ["fly"]}}, {})


# ---------------------------------------------------------------- encryption at rest
ENC = {"encryption_at_rest": {"enabled": True, "key_env": "AIOPS_DATA_KEY"}}


def test_missing_key_refuses_with_a_clear_message():
    with pytest.raises(PolicyError) as exc:
        load_cipher(ENC, {})
    assert str(exc.value) == ("encryption at rest is enabled (serving.json security.encryption_at_rest) but the "
                              "environment variable AIOPS_DATA_KEY is not set; set it to a 32-byte key; " + KEY_HELP)
    with pytest.raises(PolicyError, match=re.escape("AIOPS_DATA_KEY must hold a 32-byte key as 64 hex digits or base64")):
        load_cipher(ENC, {"AIOPS_DATA_KEY": "short"})
    assert load_cipher({"encryption_at_rest": {"enabled": False}}, {}) is None


def test_keys_parse_from_hex_and_base64():
    raw = bytes(range(32))
    import base64

    assert parse_key(raw.hex()) == raw
    assert parse_key(base64.urlsafe_b64encode(raw).decode()) == raw
    assert parse_key(base64.b64encode(raw).decode().rstrip("=")) == raw
    c = load_cipher(ENC, {"AIOPS_DATA_KEY": raw.hex()})
    assert c.key == raw and len(c.key_id) == 16 and c.key_id not in raw.hex()  # sealing: tests/test_audit_sealed.py


def test_log_timestamps_are_iso_ts_to_the_microsecond():
    from aiops.runtime.audit.predlog import Clock, iso_ts

    clock = Clock()
    t = 1764088888.0
    for step in [0.0, 1e-7, 3e-7, 4.999995e-7, 0.4999995, 0.9999996, 1.0, 86399.5, 1e-6] * 300:
        t += step
        assert clock.text(t) == iso_ts(t), t


def test_access_dataclass_is_frozen():
    acc = Access({}, {}, "")
    with pytest.raises(AttributeError):
        acc.source = "x"  # type: ignore[misc]
