"""API keys: table of not responsible / invalid / valid, with the client's IP and Origin allowlists."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from multidict import CIMultiDict

from gateway.pipeline.authn.api_key import ApiKeyAuthenticator
from gateway.pipeline.sources import ApiClientRecord
from tests.pipeline.authn.test_service_token import checksummed, sha256
from tests.pipeline.conftest import AuthClientFactory, FakeClock, MemoryApiKeySource, decide

NOW = 1_759_742_876.0
KEY = checksummed("ak_", "K" * 43)
BROWSER = checksummed("ak_", "B" * 43)
REVOKED = checksummed("ak_", "R" * 43)
EXPIRED = checksummed("ak_", "E" * 43)
UNKNOWN = checksummed("ak_", "U" * 43)


def api_keys() -> MemoryApiKeySource:
    return MemoryApiKeySource(
        {
            sha256(KEY): ApiClientRecord(
                "sdk-acme", "key-1", tenant="acme", scopes=frozenset({"sdk:read"}), ip_allow=("203.0.113.0/24",)
            ),
            sha256(BROWSER): ApiClientRecord(
                "web-acme",
                "key-2",
                tenant="acme",
                origins=("https://app.example.com", "https://*.example.com"),
            ),
            sha256(REVOKED): ApiClientRecord("sdk-acme", "key-3", revoked=True),
            sha256(EXPIRED): ApiClientRecord("sdk-acme", "key-4", expires_at=NOW - 1),
        }
    )


@dataclass(frozen=True)
class Case:
    id: str
    headers: dict[str, str]
    expect: str
    client_ip: str = "203.0.113.9"
    path: str = "/v1/sdk/items"
    status: int = 401


CASES = [
    # not responsible
    Case("no-key", {}, "none"),
    Case("bearer-only", {"Authorization": f"Bearer {KEY}"}, "none"),
    Case("key-in-query-ignored-by-default", {}, "none", path=f"/v1/sdk/items?api_key={KEY}"),
    # invalid
    Case("empty", {"X-API-Key": ""}, "apikey.malformed"),
    Case("service-token-prefix", {"X-API-Key": checksummed("sk_")}, "apikey.malformed"),
    Case("bad-checksum", {"X-API-Key": KEY[:-1] + ("0" if KEY[-1] != "0" else "1")}, "apikey.malformed"),
    Case("huge", {"X-API-Key": "ak_" + "a" * 5000}, "apikey.malformed"),
    Case("unknown", {"X-API-Key": UNKNOWN}, "apikey.unknown"),
    Case("revoked", {"X-API-Key": REVOKED}, "apikey.revoked"),
    Case("expired", {"X-API-Key": EXPIRED}, "apikey.expired"),
    Case("ip-not-allowed", {"X-API-Key": KEY}, "apikey.ip_denied", client_ip="198.51.100.1", status=403),
    Case(
        "origin-not-allowed",
        {"X-API-Key": BROWSER, "Origin": "https://evil.example.net"},
        "apikey.origin_denied",
        status=403,
    ),
    Case(
        "origin-wildcard-no-label",
        {"X-API-Key": BROWSER, "Origin": "https://example.com"},
        "apikey.origin_denied",
        status=403,
    ),
    Case(
        "origin-wrong-scheme",
        {"X-API-Key": BROWSER, "Origin": "http://app.example.com"},
        "apikey.origin_denied",
        status=403,
    ),
    Case(
        "origin-suffix-trick",
        {"X-API-Key": BROWSER, "Origin": "https://evilexample.com"},
        "apikey.origin_denied",
        status=403,
    ),
    Case("origin-null", {"X-API-Key": BROWSER, "Origin": "null"}, "apikey.origin_denied", status=403),
    # valid
    Case("valid-sdk", {"X-API-Key": KEY}, "ok"),
    Case("valid-header-name-case", {"x-api-key": KEY}, "ok"),
    Case("valid-browser-exact-origin", {"X-API-Key": BROWSER, "Origin": "https://app.example.com"}, "ok"),
    Case("valid-browser-wildcard-origin", {"X-API-Key": BROWSER, "Origin": "https://eu.admin.example.com"}, "ok"),
    Case("valid-browser-origin-case", {"X-API-Key": BROWSER, "Origin": "HTTPS://APP.EXAMPLE.COM"}, "ok"),
    Case("valid-no-origin-server-side", {"X-API-Key": BROWSER}, "ok"),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_api_key_table(auth_client: AuthClientFactory, case: Case) -> None:
    client = await auth_client(ApiKeyAuthenticator(api_keys(), clock=FakeClock(NOW)), client_ip=case.client_ip)
    result = await decide(client, "GET", case.path, headers=case.headers)
    if case.expect == "none":
        assert result["outcome"] == "none", result
    elif case.expect == "ok":
        assert result["outcome"] == "principal", result
        assert result["method"] == "api_key"
        assert result["tenant"] == "acme"
    else:
        assert result["outcome"] == "error", result
        assert (result["reason"], result["status"]) == (case.expect, case.status)


async def test_principal_fields(auth_client: AuthClientFactory) -> None:
    client = await auth_client(ApiKeyAuthenticator(api_keys(), clock=FakeClock(NOW)), client_ip="203.0.113.1")
    result = await decide(client, "GET", "/", headers={"X-API-Key": KEY})
    assert result == {
        "outcome": "principal",
        "subject": "client:sdk-acme",
        "method": "api_key",
        "credential_kind": "api_key",
        "credential_id": "key-1",
        "tenant": "acme",
        "scopes": ["sdk:read"],
        "service_id": None,
        "expires_at": None,
        "buffered_body": None,
    }


async def test_header_name_is_configurable(auth_client: AuthClientFactory) -> None:
    client = await auth_client(
        ApiKeyAuthenticator(api_keys(), header="X-Client-Key", clock=FakeClock(NOW)), client_ip="203.0.113.1"
    )
    assert (await decide(client, "GET", "/", headers={"X-Client-Key": KEY}))["outcome"] == "principal"
    assert (await decide(client, "GET", "/", headers={"X-API-Key": KEY}))["outcome"] == "none"
    challenge = (await decide(client, "GET", "/", headers={"X-Client-Key": UNKNOWN}))["www_authenticate"]
    assert challenge == 'ApiKey realm="gateway", header="X-Client-Key"'


async def test_query_parameter_only_when_configured(auth_client: AuthClientFactory) -> None:
    client = await auth_client(
        ApiKeyAuthenticator(api_keys(), query_param="api_key", clock=FakeClock(NOW)), client_ip="203.0.113.1"
    )
    assert (await decide(client, "GET", f"/items?api_key={KEY}"))["outcome"] == "principal"
    twice = await decide(client, "GET", f"/items?api_key={KEY}&api_key={KEY}")
    assert twice["reason"] == "apikey.malformed"
    # The header wins over the query string.
    assert (await decide(client, "GET", "/items?api_key=nope", headers={"X-API-Key": KEY}))["outcome"] == "principal"


async def test_two_key_headers_are_refused(auth_client: AuthClientFactory) -> None:
    client = await auth_client(ApiKeyAuthenticator(api_keys(), clock=FakeClock(NOW)), client_ip="203.0.113.1")
    result = await decide(client, "GET", "/", headers=[("X-API-Key", KEY), ("X-API-Key", BROWSER)])
    assert result["reason"] == "apikey.malformed"


async def test_unknown_and_revoked_read_the_same_to_the_client(auth_client: AuthClientFactory) -> None:
    client = await auth_client(ApiKeyAuthenticator(api_keys(), clock=FakeClock(NOW)))
    unknown = await decide(client, "GET", "/", headers={"X-API-Key": UNKNOWN})
    revoked = await decide(client, "GET", "/", headers={"X-API-Key": REVOKED})
    assert unknown["code"] == revoked["code"] == "apikey.invalid"
    assert unknown["detail"] == revoked["detail"]


class RememberingApiKeys(MemoryApiKeySource):
    """An API key source with the store adapter's ``peek``: answers from memory once a key was looked up."""

    def __init__(self, records: dict[str, ApiClientRecord]) -> None:
        super().__init__(records)
        self.seen: set[str] = set()
        self.peeks = 0

    async def lookup(self, key_hash: str) -> ApiClientRecord | None:
        self.seen.add(key_hash)
        return await super().lookup(key_hash)

    def peek(self, key_hash: str) -> ApiClientRecord | None:
        self.peeks += 1
        return self.records.get(key_hash) if key_hash in self.seen else None


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_the_fast_path_decides_like_the_general_path(auth_client: AuthClientFactory, case: Case) -> None:
    general = await auth_client(ApiKeyAuthenticator(api_keys(), clock=FakeClock(NOW)), client_ip=case.client_ip)
    source = RememberingApiKeys(api_keys().records)
    remembering = await auth_client(ApiKeyAuthenticator(source, clock=FakeClock(NOW)), client_ip=case.client_ip)
    expected = await decide(general, "GET", case.path, headers=case.headers)
    for _ in range(3):  # the first request takes the general path, the next ones the fast path where they can
        assert await decide(remembering, "GET", case.path, headers=case.headers) == expected
    if case.id in ("valid-sdk", "revoked", "expired", "origin-not-allowed"):
        assert source.lookups == 1 and source.peeks == 2  # decided from memory after the first request


async def test_the_fast_path_needs_exactly_one_key_header(auth_client: AuthClientFactory) -> None:
    source = RememberingApiKeys(api_keys().records)
    client = await auth_client(ApiKeyAuthenticator(source, clock=FakeClock(NOW)), client_ip="203.0.113.9")
    assert (await decide(client, "GET", "/", headers={"X-API-Key": KEY}))["outcome"] == "principal"
    twice = CIMultiDict([("X-API-Key", KEY), ("X-API-Key", KEY)])
    assert (await decide(client, "GET", "/", headers=twice))["reason"] == "apikey.malformed"
    padded = await decide(client, "GET", "/", headers={"X-API-Key": f" {KEY}\t"})
    assert padded["outcome"] == "principal" and source.lookups == 1
