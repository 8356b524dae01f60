"""Legacy service signatures: table of not responsible / invalid (each reason) / valid, over real requests."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway.pipeline.authn.derived import MAX_KEYS
from gateway.pipeline.authn.hmac_legacy import LegacyHmacAuthenticator
from gateway.pipeline.sources import KeyAlgorithm, VerificationKey
from tests.pipeline.conftest import AuthClientFactory, FakeClock, MemoryNonces, MemoryServiceKeys, decide

SECRET = "ca164d91b9ae28ff" * 4
NEW_SECRET = "0f1e2d3c4b5a6978" * 4
SERVICE = "main-backend"


def sign(
    secret: str, service_id: str, method: str, path: str, timestamp: int | str, *, upper: bool = False
) -> dict[str, str]:
    """The formula, written here independently of the gateway's code."""
    message = f"{service_id}:{method}:{path}:{timestamp}".encode()
    signature = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()
    return {
        "X-Service-ID": service_id,
        "X-Service-Signature": signature.upper() if upper else signature,
        "X-Service-Timestamp": str(timestamp),
    }


def service_keys() -> MemoryServiceKeys:
    return MemoryServiceKeys(
        [
            VerificationKey("k-old", SERVICE, KeyAlgorithm.HMAC_SHA256, SECRET.encode(), tenant="acme"),
            VerificationKey(
                "k-new", SERVICE, KeyAlgorithm.HMAC_SHA256, NEW_SECRET.encode(), scopes=frozenset({"user:read"})
            ),
            VerificationKey("k-expired", "retired-svc", KeyAlgorithm.HMAC_SHA256, SECRET.encode(), expires_at=1.0),
            VerificationKey("k-ed", "ed-only", KeyAlgorithm.ED25519, b"\x01" * 32),
        ]
    )


Headers = Callable[[int], dict[str, str]]


@dataclass(frozen=True)
class Case:
    id: str
    headers: Headers
    expect: str  # "none", "ok" or the reason code
    method: str = "GET"
    path: str = "/v1/user/42"
    key_id: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


CASES = [
    # not responsible
    Case("no-headers", lambda now: {}, "none"),
    Case("bearer-only", lambda now: {"Authorization": "Bearer x"}, "none"),
    # invalid
    Case("missing-signature", lambda now: {"X-Service-ID": SERVICE, "X-Service-Timestamp": str(now)}, "hmac.malformed"),
    Case("missing-timestamp-and-id", lambda now: {"X-Service-Signature": "a" * 64}, "hmac.malformed"),
    Case(
        "signature-not-hex",
        lambda now: {**sign(SECRET, SERVICE, "GET", "/v1/user/42", now), "X-Service-Signature": "z" * 64},
        "hmac.malformed",
    ),
    Case(
        "signature-short",
        lambda now: {**sign(SECRET, SERVICE, "GET", "/v1/user/42", now), "X-Service-Signature": "ab" * 16},
        "hmac.malformed",
    ),
    Case(
        "signature-with-spaces",
        lambda now: {**sign(SECRET, SERVICE, "GET", "/v1/user/42", now), "X-Service-Signature": "ab" * 31 + " a"},
        "hmac.malformed",
    ),
    Case(
        "signature-huge",
        lambda now: {**sign(SECRET, SERVICE, "GET", "/v1/user/42", now), "X-Service-Signature": "a" * 6000},
        "hmac.malformed",
    ),
    Case("timestamp-not-a-number", lambda now: sign(SECRET, SERVICE, "GET", "/v1/user/42", "soon"), "hmac.malformed"),
    Case("timestamp-float", lambda now: sign(SECRET, SERVICE, "GET", "/v1/user/42", f"{now}.5"), "hmac.malformed"),
    Case("timestamp-negative", lambda now: sign(SECRET, SERVICE, "GET", "/v1/user/42", -now), "hmac.malformed"),
    Case("timestamp-huge", lambda now: sign(SECRET, SERVICE, "GET", "/v1/user/42", "9" * 40), "hmac.malformed"),
    Case("service-id-colon", lambda now: sign(SECRET, "main:svc", "GET", "/v1/user/42", now), "hmac.malformed"),
    Case("timestamp-too-old", lambda now: sign(SECRET, SERVICE, "GET", "/v1/user/42", now - 301), "hmac.skew"),
    Case("timestamp-in-future", lambda now: sign(SECRET, SERVICE, "GET", "/v1/user/42", now + 301), "hmac.skew"),
    Case("unknown-service", lambda now: sign(SECRET, "nobody", "GET", "/v1/user/42", now), "hmac.unknown_key"),
    Case("only-key-expired", lambda now: sign(SECRET, "retired-svc", "GET", "/v1/user/42", now), "hmac.unknown_key"),
    Case("only-key-ed25519", lambda now: sign(SECRET, "ed-only", "GET", "/v1/user/42", now), "hmac.unknown_key"),
    Case("wrong-secret", lambda now: sign("not-the-secret", SERVICE, "GET", "/v1/user/42", now), "hmac.bad_signature"),
    Case("wrong-method", lambda now: sign(SECRET, SERVICE, "POST", "/v1/user/42", now), "hmac.bad_signature"),
    Case("wrong-path", lambda now: sign(SECRET, SERVICE, "GET", "/v1/user/43", now), "hmac.bad_signature"),
    Case(
        "query-signed-into-path",
        lambda now: sign(SECRET, SERVICE, "GET", "/v1/user/42?x=1", now),
        "hmac.bad_signature",
        path="/v1/user/42?x=1",
    ),
    Case(
        "decoded-path-signed",
        lambda now: sign(SECRET, SERVICE, "GET", "/v1/user/a b", now),
        "hmac.bad_signature",
        path="/v1/user/a%20b",
    ),
    Case(
        "signed-at-other-timestamp",
        lambda now: {**sign(SECRET, SERVICE, "GET", "/v1/user/42", now - 5), "X-Service-Timestamp": str(now)},
        "hmac.bad_signature",
    ),
    # valid
    Case("valid-old-key", lambda now: sign(SECRET, SERVICE, "GET", "/v1/user/42", now), "ok", key_id="k-old"),
    Case("valid-new-key", lambda now: sign(NEW_SECRET, SERVICE, "GET", "/v1/user/42", now), "ok", key_id="k-new"),
    Case(
        "valid-query-not-covered",
        lambda now: sign(SECRET, SERVICE, "GET", "/v1/user/42", now),
        "ok",
        path="/v1/user/42?anything=goes",
        key_id="k-old",
    ),
    Case(
        "valid-raw-percent-encoded-path",
        lambda now: sign(SECRET, SERVICE, "GET", "/v1/user/a%20b", now),
        "ok",
        path="/v1/user/a%20b",
        key_id="k-old",
    ),
    Case(
        "valid-post",
        lambda now: sign(SECRET, SERVICE, "POST", "/v1/user/42", now),
        "ok",
        method="POST",
        key_id="k-old",
    ),
    Case("valid-edge-of-window-past", lambda now: sign(SECRET, SERVICE, "GET", "/v1/user/42", now - 300), "ok"),
    Case("valid-edge-of-window-future", lambda now: sign(SECRET, SERVICE, "GET", "/v1/user/42", now + 300), "ok"),
    Case("valid-uppercase-hex", lambda now: sign(SECRET, SERVICE, "GET", "/v1/user/42", now, upper=True), "ok"),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_legacy_hmac_table(auth_client: AuthClientFactory, case: Case) -> None:
    clock = FakeClock(1_759_742_876)
    client = await auth_client(LegacyHmacAuthenticator(service_keys(), clock=clock))
    result = await decide(client, case.method, case.path, headers=case.headers(int(clock.now)), data=b"")
    if case.expect == "none":
        assert result == {"outcome": "none", "buffered_body": None}
    elif case.expect == "ok":
        assert result["outcome"] == "principal", result
        assert result["subject"] == "service:main-backend"
        assert result["service_id"] == SERVICE
        assert result["method"] == "hmac_legacy"
        assert result["credential_kind"] == "service_key"
        if case.key_id is not None:
            assert result["credential_id"] == case.key_id
    else:
        assert result["outcome"] == "error", result
        assert result["reason"] == case.expect
        assert result["status"] == 401
        assert result["www_authenticate"] == 'ServiceSignature realm="gateway"'


async def test_client_never_learns_whether_the_key_or_the_signature_was_wrong(auth_client: AuthClientFactory) -> None:
    clock = FakeClock(1_759_742_876)
    client = await auth_client(LegacyHmacAuthenticator(service_keys(), clock=clock))
    now = int(clock.now)
    unknown = await decide(client, "GET", "/v1/user/42", headers=sign(SECRET, "nobody", "GET", "/v1/user/42", now))
    wrong = await decide(client, "GET", "/v1/user/42", headers=sign("nope", SERVICE, "GET", "/v1/user/42", now))
    assert (unknown["reason"], wrong["reason"]) == ("hmac.unknown_key", "hmac.bad_signature")
    assert unknown["code"] == wrong["code"] == "hmac.invalid_signature"
    assert unknown["detail"] == wrong["detail"]
    assert "nobody" in unknown["log_detail"]  # the operator does learn which


async def test_principal_carries_the_keys_tenant_and_scopes(auth_client: AuthClientFactory) -> None:
    clock = FakeClock()
    client = await auth_client(LegacyHmacAuthenticator(service_keys(), clock=clock))
    now = int(clock.now)
    old = await decide(client, "GET", "/x", headers=sign(SECRET, SERVICE, "GET", "/x", now))
    new = await decide(client, "GET", "/x", headers=sign(NEW_SECRET, SERVICE, "GET", "/x", now))
    assert (old["tenant"], old["scopes"]) == ("acme", [])
    assert (new["tenant"], new["scopes"]) == (None, ["user:read"])


async def test_window_is_configurable(auth_client: AuthClientFactory) -> None:
    clock = FakeClock()
    client = await auth_client(LegacyHmacAuthenticator(service_keys(), window=30, clock=clock))
    now = int(clock.now)
    inside = await decide(client, "GET", "/x", headers=sign(SECRET, SERVICE, "GET", "/x", now - 30))
    outside = await decide(client, "GET", "/x", headers=sign(SECRET, SERVICE, "GET", "/x", now - 31))
    assert inside["outcome"] == "principal"
    assert outside["reason"] == "hmac.skew"


async def test_replay_protection_accepts_a_signature_once(auth_client: AuthClientFactory) -> None:
    clock = FakeClock()
    nonces = MemoryNonces(clock=clock)
    client = await auth_client(
        LegacyHmacAuthenticator(service_keys(), replay_protection=True, nonces=nonces, clock=clock)
    )
    now = int(clock.now)
    headers = sign(SECRET, SERVICE, "GET", "/x", now - 100)
    first = await decide(client, "GET", "/x", headers=headers)
    second = await decide(client, "GET", "/x?other=query", headers=headers)
    assert first["outcome"] == "principal"
    assert second["reason"] == "hmac.replay"
    # Remembered exactly as long as the signature could still be accepted: timestamp + window - now.
    assert nonces.ttls == [200, 200]
    fresh = await decide(client, "GET", "/x", headers=sign(SECRET, SERVICE, "GET", "/x", now))
    assert fresh["outcome"] == "principal"


async def test_without_replay_protection_a_signature_can_be_reused(auth_client: AuthClientFactory) -> None:
    clock = FakeClock()
    client = await auth_client(LegacyHmacAuthenticator(service_keys(), clock=clock))
    headers = sign(SECRET, SERVICE, "GET", "/x", int(clock.now))
    for _ in range(2):
        assert (await decide(client, "GET", "/x", headers=headers))["outcome"] == "principal"


async def test_malformed_requests_cost_no_key_lookup(auth_client: AuthClientFactory) -> None:
    keys = service_keys()
    clock = FakeClock()
    client = await auth_client(LegacyHmacAuthenticator(keys, clock=clock))
    now = int(clock.now)
    await decide(client, "GET", "/x", headers=sign(SECRET, SERVICE, "GET", "/x", "soon"))
    await decide(client, "GET", "/x", headers=sign(SECRET, SERVICE, "GET", "/x", now - 9999))
    assert keys.lookups == 0


def test_configuration_errors() -> None:
    with pytest.raises(ValueError, match="nonce store"):
        LegacyHmacAuthenticator(service_keys(), replay_protection=True)
    with pytest.raises(ValueError, match="positive"):
        LegacyHmacAuthenticator(service_keys(), window=0)


async def test_a_request_signed_by_an_independent_stdlib_script_is_accepted(auth_client: AuthClientFactory) -> None:
    client = await auth_client(LegacyHmacAuthenticator(service_keys()))
    url = str(client.make_url("/api/system/health?verbose=1"))
    script = Path(__file__).with_name("legacy_sign_script.py")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        SERVICE,
        SECRET,
        "GET",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, stderr.decode()
    result = json.loads(stdout)
    assert result["outcome"] == "principal", result
    assert (result["subject"], result["credential_id"]) == ("service:main-backend", "k-old")


# -- what is remembered between requests ---------------------------------------------------------------


class PeekableKeys:
    """Answers the very same key list object until the keys change, as the store adapter does."""

    def __init__(self, keys: Sequence[VerificationKey]) -> None:
        self.keys = tuple(keys)
        self.peeks = 0

    def replace(self, keys: Sequence[VerificationKey]) -> None:
        self.keys = tuple(keys)

    def peek_verification_keys(self, service_id: str) -> Sequence[VerificationKey] | None:
        self.peeks += 1
        return tuple(key for key in self.keys if key.service_id == service_id)

    async def verification_keys(self, service_id: str) -> Sequence[VerificationKey]:
        raise AssertionError("peek answers")

    def peek_key_by_id(self, key_id: str) -> tuple[VerificationKey | None] | None:
        raise AssertionError("not used by the legacy scheme")

    async def key_by_id(self, key_id: str) -> VerificationKey | None:
        raise AssertionError("not used by the legacy scheme")


class SameListKeys(PeekableKeys):
    """PeekableKeys answering one list object for one service (what the store's memory returns)."""

    def peek_verification_keys(self, service_id: str) -> Sequence[VerificationKey] | None:
        self.peeks += 1
        return self.keys


async def test_a_key_expiring_in_an_unchanged_list_stops_working_at_its_expiry(auth_client: AuthClientFactory) -> None:
    clock = FakeClock(1_759_742_876)
    expiring = VerificationKey("k-short", SERVICE, KeyAlgorithm.HMAC_SHA256, SECRET.encode(), expires_at=clock.now + 10)
    keys = SameListKeys([expiring])
    client = await auth_client(LegacyHmacAuthenticator(keys, clock=clock))
    for _ in range(2):  # the second request finds the list's candidates remembered
        result = await decide(client, "GET", "/x", headers=sign(SECRET, SERVICE, "GET", "/x", int(clock.now)))
        assert result["outcome"] == "principal", result
    clock.now += 9.5
    result = await decide(client, "GET", "/x", headers=sign(SECRET, SERVICE, "GET", "/x", int(clock.now)))
    assert result["outcome"] == "principal", result
    clock.now += 0.5  # exactly expires_at: no longer usable
    result = await decide(client, "GET", "/x", headers=sign(SECRET, SERVICE, "GET", "/x", int(clock.now)))
    assert result["reason"] == "hmac.unknown_key"
    assert keys.peeks == 4  # asked on every request


async def test_a_revoked_key_stops_working_on_the_next_request(auth_client: AuthClientFactory) -> None:
    clock = FakeClock(1_759_742_876)
    old = VerificationKey("k-old", SERVICE, KeyAlgorithm.HMAC_SHA256, SECRET.encode())
    new = VerificationKey("k-new", SERVICE, KeyAlgorithm.HMAC_SHA256, NEW_SECRET.encode())
    keys = SameListKeys([old, new])
    client = await auth_client(LegacyHmacAuthenticator(keys, clock=clock))
    now = int(clock.now)
    for secret, key_id in ((SECRET, "k-old"), (NEW_SECRET, "k-new"), (SECRET, "k-old")):
        result = await decide(client, "GET", "/x", headers=sign(secret, SERVICE, "GET", "/x", now))
        assert result["credential_id"] == key_id
    keys.replace([new])  # k-old revoked: the source answers another list
    revoked = await decide(client, "GET", "/x", headers=sign(SECRET, SERVICE, "GET", "/x", now))
    assert revoked["reason"] == "hmac.bad_signature"
    still = await decide(client, "GET", "/x", headers=sign(NEW_SECRET, SERVICE, "GET", "/x", now))
    assert still["credential_id"] == "k-new"
    keys.replace([])  # every key revoked
    gone = await decide(client, "GET", "/x", headers=sign(NEW_SECRET, SERVICE, "GET", "/x", now))
    assert gone["reason"] == "hmac.unknown_key"


async def test_a_rotated_in_key_works_on_the_next_request(auth_client: AuthClientFactory) -> None:
    clock = FakeClock(1_759_742_876)
    old = VerificationKey("k-old", SERVICE, KeyAlgorithm.HMAC_SHA256, SECRET.encode())
    keys = PeekableKeys([old])  # a new tuple per request: nothing remembered hits, the answer is the same
    client = await auth_client(LegacyHmacAuthenticator(keys, clock=clock))
    now = int(clock.now)
    assert (await decide(client, "GET", "/x", headers=sign(NEW_SECRET, SERVICE, "GET", "/x", now)))["reason"] == (
        "hmac.bad_signature"
    )
    keys.replace([old, VerificationKey("k-new", SERVICE, KeyAlgorithm.HMAC_SHA256, NEW_SECRET.encode())])
    result = await decide(client, "GET", "/x", headers=sign(NEW_SECRET, SERVICE, "GET", "/x", now))
    assert result["credential_id"] == "k-new"


async def test_remembered_service_ids_are_bounded_and_never_admit_a_malformed_one(
    auth_client: AuthClientFactory,
) -> None:
    clock = FakeClock(1_759_742_876)
    authenticator = LegacyHmacAuthenticator(service_keys(), clock=clock)
    client = await auth_client(authenticator)
    now = int(clock.now)
    assert (await decide(client, "GET", "/x", headers=sign(SECRET, SERVICE, "GET", "/x", now)))["outcome"] == (
        "principal"
    )
    bad = await decide(client, "GET", "/x", headers=sign(SECRET, "main backend", "GET", "/x", now))
    assert bad["reason"] == "hmac.malformed"
    # A flood of distinct well-formed ids fills the memory; the next one starts it over.
    authenticator._valid_ids.update(f"svc-{index}" for index in range(MAX_KEYS - len(authenticator._valid_ids)))
    unknown = await decide(client, "GET", "/x", headers=sign(SECRET, "one-more", "GET", "/x", now))
    assert unknown["reason"] == "hmac.unknown_key"
    assert authenticator._valid_ids == {"one-more"}
