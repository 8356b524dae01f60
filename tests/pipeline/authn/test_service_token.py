"""Service tokens and static internal tokens: table of not responsible / invalid / valid, over real requests."""

from __future__ import annotations

import hashlib
import secrets
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.credentials.tokens import generate_service_token, hash_token
from gateway.pipeline.authn.bearer import _TOKEN68 as TOKEN68
from gateway.pipeline.authn.bearer import (
    MAX_TOKEN_LENGTH,
    REMEMBER_MAX_ENTRIES,
    REMEMBER_MAX_LENGTH,
    MalformedBearer,
    bearer_token,
)
from gateway.pipeline.authn.bearer import _valid as bearer_valid
from gateway.pipeline.authn.service_token import ServiceTokenAuthenticator, StaticTokens
from gateway.pipeline.sources import TokenRecord
from tests.pipeline.conftest import AuthClientFactory, FakeClock, MemoryTokenSource, decide

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
NOW = 1_759_742_876.0


def checksummed(prefix: str, random_part: str | None = None) -> str:
    """The documented token format, written here from its description: prefix + 43 base62 + base62(CRC32), 6 wide."""
    body = random_part or "".join(secrets.choice(BASE62) for _ in range(43))
    number = zlib.crc32((prefix + body).encode())
    digits = ""
    while number:
        number, digit = divmod(number, 62)
        digits = BASE62[digit] + digits
    return prefix + body + digits.rjust(6, "0")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


GOOD = checksummed("sk_", "A" * 43)
LEGACY = "sk_" + "0123456789abcdef" * 4
REVOKED = checksummed("sk_", "R" * 43)
EXPIRED = checksummed("sk_", "E" * 43)
IP_BOUND = checksummed("sk_", "I" * 43)
IP6_BOUND = checksummed("sk_", "J" * 43)
UNKNOWN = checksummed("sk_", "U" * 43)
STATIC_OLD = "f" * 64
STATIC_NEW = "e" * 64
BAD_CHECKSUM = GOOD[:-1] + ("0" if GOOD[-1] != "0" else "1")


def token_source() -> MemoryTokenSource:
    return MemoryTokenSource(
        {
            sha256(GOOD): TokenRecord(
                "tok-1", "ci-runner", tenant="acme", scopes=frozenset({"deploy"}), expires_at=NOW + 60
            ),
            sha256(LEGACY): TokenRecord("tok-legacy", "old-cron"),
            sha256(REVOKED): TokenRecord("tok-rev", "ci-runner", revoked=True),
            sha256(EXPIRED): TokenRecord("tok-exp", "ci-runner", expires_at=NOW),
            sha256(IP_BOUND): TokenRecord("tok-ip", "ci-runner", ip_allow=("10.0.0.0/8", "192.0.2.7")),
            sha256(IP6_BOUND): TokenRecord("tok-ip6", "ci-runner", ip_allow=("2001:db8::/32",)),
        }
    )


def static_tokens() -> StaticTokens:
    return StaticTokens.from_secrets(
        {"media-clustering": [STATIC_OLD, STATIC_NEW]}, scopes={"media-clustering": frozenset({"internal"})}
    )


@dataclass(frozen=True)
class Case:
    id: str
    headers: dict[str, str]
    expect: str  # "none", "ok" or the reason code
    client_ip: str = "10.1.2.3"
    credential_id: str | None = None
    status: int = 401


CASES = [
    # not responsible
    Case("no-authorization", {}, "none"),
    Case("basic-auth", {"Authorization": "Basic dXNlcjpwYXNz"}, "none"),
    Case("jwt-shaped", {"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2ln"}, "none"),
    Case("api-key-header", {"X-API-Key": checksummed("ak_")}, "none"),
    # invalid
    Case("empty-bearer", {"Authorization": "Bearer "}, "token.malformed"),
    Case("bearer-with-space-inside", {"Authorization": "Bearer sk_abc def"}, "token.malformed"),
    Case("bearer-bad-characters", {"Authorization": "Bearer sk_é€"}, "token.malformed"),
    Case("bad-checksum", {"Authorization": f"Bearer {BAD_CHECKSUM}"}, "token.malformed"),
    Case("truncated", {"Authorization": f"Bearer {GOOD[:-3]}"}, "token.malformed"),
    Case("wrong-prefix-case", {"Authorization": f"Bearer SK_{GOOD[3:]}"}, "token.unknown"),
    Case("huge-token", {"Authorization": "Bearer sk_" + "a" * 3000}, "token.malformed"),
    Case("unknown", {"Authorization": f"Bearer {UNKNOWN}"}, "token.unknown"),
    Case("revoked", {"Authorization": f"Bearer {REVOKED}"}, "token.revoked"),
    Case("expired", {"Authorization": f"Bearer {EXPIRED}"}, "token.expired"),
    Case(
        "ip-not-allowed", {"Authorization": f"Bearer {IP_BOUND}"}, "token.ip_denied", client_ip="192.0.2.8", status=403
    ),
    Case("ipv4-for-ipv6-list", {"Authorization": f"Bearer {IP6_BOUND}"}, "token.ip_denied", status=403),
    Case("static-wrong-secret", {"Authorization": "Bearer " + "d" * 64}, "token.unknown"),
    # valid
    Case("valid-checksummed", {"Authorization": f"Bearer {GOOD}"}, "ok", credential_id="tok-1"),
    Case("valid-lowercase-scheme", {"Authorization": f"bearer {GOOD}"}, "ok", credential_id="tok-1"),
    Case("valid-legacy-hex", {"Authorization": f"Bearer {LEGACY}"}, "ok", credential_id="tok-legacy"),
    Case(
        "valid-ip-in-cidr",
        {"Authorization": f"Bearer {IP_BOUND}"},
        "ok",
        client_ip="10.200.0.1",
        credential_id="tok-ip",
    ),
    Case(
        "valid-exact-ip", {"Authorization": f"Bearer {IP_BOUND}"}, "ok", client_ip="192.0.2.7", credential_id="tok-ip"
    ),
    Case("valid-ipv4-mapped-ipv6", {"Authorization": f"Bearer {IP_BOUND}"}, "ok", client_ip="::ffff:10.0.0.9"),
    Case(
        "valid-ipv6", {"Authorization": f"Bearer {IP6_BOUND}"}, "ok", client_ip="2001:db8::1", credential_id="tok-ip6"
    ),
    Case("valid-static-old", {"Authorization": f"Bearer {STATIC_OLD}"}, "ok", credential_id="media-clustering#0"),
    Case("valid-static-new", {"Authorization": f"Bearer {STATIC_NEW}"}, "ok", credential_id="media-clustering#1"),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_service_token_table(auth_client: AuthClientFactory, case: Case) -> None:
    authenticator = ServiceTokenAuthenticator(token_source(), static=static_tokens(), clock=FakeClock(NOW))
    client = await auth_client(authenticator, client_ip=case.client_ip)
    result = await decide(client, "GET", "/v1/deploy", headers=case.headers)
    if case.expect == "none":
        assert result["outcome"] == "none", result
    elif case.expect == "ok":
        assert result["outcome"] == "principal", result
        assert result["method"] == "service_token"
        assert result["subject"].startswith("service:")
        if case.credential_id is not None:
            assert result["credential_id"] == case.credential_id
    else:
        assert result["outcome"] == "error", result
        assert (result["reason"], result["status"]) == (case.expect, case.status)
        if case.status == 401:
            assert result["www_authenticate"].startswith('Bearer realm="gateway", error=')


async def test_principal_fields(auth_client: AuthClientFactory) -> None:
    client = await auth_client(ServiceTokenAuthenticator(token_source(), static=static_tokens(), clock=FakeClock(NOW)))
    issued = await decide(client, "GET", "/", headers={"Authorization": f"Bearer {GOOD}"})
    static = await decide(client, "GET", "/", headers={"Authorization": f"Bearer {STATIC_NEW}"})
    assert issued == {
        "outcome": "principal",
        "subject": "service:ci-runner",
        "method": "service_token",
        "credential_kind": "service_token",
        "credential_id": "tok-1",
        "tenant": "acme",
        "scopes": ["deploy"],
        "service_id": "ci-runner",
        "expires_at": NOW + 60,
        "buffered_body": None,
    }
    assert (static["subject"], static["credential_kind"], static["scopes"]) == (
        "service:media-clustering",
        "static_token",
        ["internal"],
    )


async def test_client_reads_token_invalid_for_unknown_and_revoked(auth_client: AuthClientFactory) -> None:
    client = await auth_client(ServiceTokenAuthenticator(token_source(), clock=FakeClock(NOW)))
    unknown = await decide(client, "GET", "/", headers={"Authorization": f"Bearer {UNKNOWN}"})
    revoked = await decide(client, "GET", "/", headers={"Authorization": f"Bearer {REVOKED}"})
    expired = await decide(client, "GET", "/", headers={"Authorization": f"Bearer {EXPIRED}"})
    assert unknown["code"] == revoked["code"] == "token.invalid"
    assert expired["code"] == "token.expired"  # a client can act on this one: get a new token
    assert "tok-rev" in revoked["log_detail"]


async def test_malformed_tokens_cost_no_lookup(auth_client: AuthClientFactory) -> None:
    source = token_source()
    client = await auth_client(ServiceTokenAuthenticator(source, clock=FakeClock(NOW)))
    for token in (BAD_CHECKSUM, GOOD[:-3], "sk_short", "sk_" + "Z" * 64):
        result = await decide(client, "GET", "/", headers={"Authorization": f"Bearer {token}"})
        assert result["reason"] == "token.malformed"
    assert source.lookups == 0


async def test_without_static_tokens_an_opaque_token_is_malformed(auth_client: AuthClientFactory) -> None:
    client = await auth_client(ServiceTokenAuthenticator(token_source(), clock=FakeClock(NOW)))
    result = await decide(client, "GET", "/", headers={"Authorization": f"Bearer {STATIC_OLD}"})
    assert result["reason"] == "token.malformed"


async def test_static_only(auth_client: AuthClientFactory) -> None:
    client = await auth_client(ServiceTokenAuthenticator(static=static_tokens()))
    assert (await decide(client, "GET", "/", headers={"Authorization": f"Bearer {STATIC_OLD}"}))[
        "outcome"
    ] == "principal"
    assert (await decide(client, "GET", "/", headers={"Authorization": f"Bearer {GOOD}"}))["reason"] == "token.unknown"


def test_static_tokens_from_files_allow_a_rotation_overlap(tmp_path: Path) -> None:
    old = tmp_path / "old.token"
    new = tmp_path / "new.token"
    old.write_text(f"# written by bootstrap, 2025-10-06\n{STATIC_OLD}\n")
    new.write_text(f"\n  {STATIC_NEW}  \n")
    tokens = StaticTokens.from_files({"media-clustering": [old, new]})
    assert [t.token_id for t in tokens.tokens] == ["media-clustering#0", "media-clustering#1"]
    assert tokens.match(STATIC_OLD) is not None and tokens.match(STATIC_NEW) is not None
    assert tokens.match("x" * 64) is None
    assert all(STATIC_OLD.encode() not in repr(t).encode() for t in tokens.tokens)  # only digests are kept


def test_static_token_errors_name_the_file_never_the_secret(tmp_path: Path) -> None:
    short = tmp_path / "short.token"
    short.write_text("tooshort-secret\n")
    with pytest.raises(ValueError, match="shorter than 32") as error:
        StaticTokens.from_files({"svc": [short]})
    assert "tooshort" not in str(error.value)
    empty = tmp_path / "empty.token"
    empty.write_text("# nothing\n")
    with pytest.raises(ValueError, match="empty.token"):
        StaticTokens.from_files({"svc": [empty]})
    with pytest.raises(ValueError, match="missing.token"):
        StaticTokens.from_files({"svc": [tmp_path / "missing.token"]})


def test_configuration_needs_a_source() -> None:
    with pytest.raises(ValueError, match="needs a token source"):
        ServiceTokenAuthenticator()


async def test_a_token_issued_by_the_credential_package_is_accepted(auth_client: AuthClientFactory) -> None:
    issued = generate_service_token()
    source = MemoryTokenSource({hash_token(issued): TokenRecord("tok-new", "deployer")})
    client = await auth_client(ServiceTokenAuthenticator(source))
    result = await decide(client, "GET", "/", headers={"Authorization": f"Bearer {issued}"})
    assert (result["outcome"], result["credential_id"]) == ("principal", "tok-new")
    assert sha256(issued) == hash_token(issued)  # the store's key is the SHA-256 hex of the whole token


class RememberingTokenSource(MemoryTokenSource):
    """A token source with the store adapter's ``peek``: answers from memory once a token was looked up."""

    def __init__(self, records: dict[str, TokenRecord]) -> None:
        super().__init__(records)
        self.seen: set[str] = set()
        self.peeks = 0

    async def lookup(self, token_hash: str) -> TokenRecord | None:
        self.seen.add(token_hash)
        return await super().lookup(token_hash)

    def peek(self, token_hash: str) -> TokenRecord | None:
        self.peeks += 1
        return self.records.get(token_hash) if token_hash in self.seen else None


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_the_fast_path_decides_like_the_general_path(auth_client: AuthClientFactory, case: Case) -> None:
    general = await auth_client(
        ServiceTokenAuthenticator(token_source(), static=static_tokens(), clock=FakeClock(NOW)),
        client_ip=case.client_ip,
    )
    source = RememberingTokenSource(token_source().records)
    remembering = await auth_client(
        ServiceTokenAuthenticator(source, static=static_tokens(), clock=FakeClock(NOW)), client_ip=case.client_ip
    )
    expected = await decide(general, "GET", "/v1/deploy", headers=case.headers)
    for _ in range(3):  # the first request takes the general path, the next ones the fast path where they can
        assert await decide(remembering, "GET", "/v1/deploy", headers=case.headers) == expected
    if case.id in ("valid-checksummed", "revoked", "expired", "ip-not-allowed"):
        assert source.lookups == 1 and source.peeks == 2  # decided from memory after the first request


async def test_the_fast_path_needs_exactly_one_bearer_header(auth_client: AuthClientFactory) -> None:
    source = RememberingTokenSource(token_source().records)
    client = await auth_client(ServiceTokenAuthenticator(source, clock=FakeClock(NOW)))
    assert (await decide(client, "GET", "/", headers={"Authorization": f"Bearer {GOOD}"}))["outcome"] == "principal"
    twice = CIMultiDict([("Authorization", f"Bearer {GOOD}"), ("Authorization", f"Bearer {GOOD}")])
    result = await decide(client, "GET", "/", headers=twice)
    assert (result["reason"], result["log_detail"]) == ("token.malformed", "more than one Authorization header")
    tabbed = await decide(client, "GET", "/", headers={"Authorization": f"Bearer \t{GOOD}\t"})
    assert tabbed["outcome"] == "principal" and tabbed["credential_id"] == "tok-1"


async def test_a_revocation_reaches_the_fast_path(auth_client: AuthClientFactory) -> None:
    source = RememberingTokenSource(token_source().records)
    client = await auth_client(ServiceTokenAuthenticator(source, clock=FakeClock(NOW)))
    headers = {"Authorization": f"Bearer {GOOD}"}
    assert (await decide(client, "GET", "/", headers=headers))["outcome"] == "principal"
    assert (await decide(client, "GET", "/", headers=headers))["outcome"] == "principal"
    source.records[sha256(GOOD)] = TokenRecord("tok-1", "ci-runner", revoked=True)  # what peek answers now
    assert (await decide(client, "GET", "/", headers=headers))["reason"] == "token.revoked"


@pytest.mark.parametrize(
    "values",
    [
        [],
        ["Basic dXNlcjpwYXNz"],
        [f"Bearer {GOOD}"],
        [f"bearer {GOOD}"],
        [f"BEARER \t{GOOD} "],
        ["Bearer"],
        ["Bearer "],
        ["Bearer sk_abc def"],
        ["Bearer sk_é€"],
        ["Bearer " + "a" * (MAX_TOKEN_LENGTH + 1)],
        ["Bearer " + "a" * REMEMBER_MAX_LENGTH + "=="],
        [f"Bearer {GOOD}", f"Bearer {GOOD}"],
        ["Basic dXNlcjpwYXNz", f"Bearer {GOOD}"],
        ["Basic dXNlcjpwYXNz", "Basic Zm9vOmJhcg=="],
    ],
)
def test_bearer_token_answers_the_same_every_time(values: list[str]) -> None:
    headers = CIMultiDictProxy(CIMultiDict([("Authorization", value) for value in values]))

    def answer() -> str | None:
        try:
            return bearer_token(headers)
        except MalformedBearer as exc:
            return f"malformed: {exc}"

    first = answer()
    assert [answer() for _ in range(3)] == [first] * 3  # remembered tokens answer as the checks did
    if len(values) == 1 and values[0][:7].lower() == "bearer ":
        token = values[0][7:].strip(" \t")
        assert (first == token) == bool(TOKEN68.fullmatch(token)) or len(token) > MAX_TOKEN_LENGTH


def test_remembered_bearer_tokens_are_bounded() -> None:
    for index in range(REMEMBER_MAX_ENTRIES + 10):
        bearer_token(CIMultiDictProxy(CIMultiDict(Authorization=f"Bearer t{index}")))
    assert 0 < len(bearer_valid) <= REMEMBER_MAX_ENTRIES
    bearer_token(CIMultiDictProxy(CIMultiDict(Authorization="Bearer " + "b" * (REMEMBER_MAX_LENGTH + 1))))
    assert "b" * (REMEMBER_MAX_LENGTH + 1) not in bearer_valid
