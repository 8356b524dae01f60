"""RFC 9421 signatures: requests signed by ``http-message-signatures`` (the reference library) must verify here.

Every signed request in this file is produced by the library's own
``HTTPMessageSigner``; the gateway's verifier is never used to sign. Requests
are real: they go over HTTP to a real aiohttp server with the exact bytes
signed (``yarl.URL(..., encoded=True)`` keeps the path and query as given).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from http_message_signatures import ContentDigest, HTTPMessageSigner, HTTPSignatureAlgorithm, algorithms
from http_message_signatures.resolvers import MappingKeyResolver
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from gateway.pipeline.authn.rfc9421 import HttpSignatureAuthenticator, content_digest
from gateway.pipeline.authn.signature_base import parse_component_ids
from gateway.pipeline.sources import KeyAlgorithm, VerificationKey
from tests.pipeline.conftest import AuthClient, AuthClientFactory, FakeClock, MemoryNonces, MemoryServiceKeys

HMAC_SECRET = b"ca164d91b9ae28ff1d3dfcdde1e641c3" * 2
ED_PRIVATE = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
ED_PUBLIC_RAW = ED_PRIVATE.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
ED_PUBLIC_PEM = ED_PRIVATE.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
DEFAULT_COMPONENTS = ("@method", "@authority", "@path", "@query")
NOW = 1_759_742_876.0


def service_keys() -> MemoryServiceKeys:
    return MemoryServiceKeys(
        [
            VerificationKey("hk1", "billing", KeyAlgorithm.HMAC_SHA256, HMAC_SECRET, tenant="acme"),
            VerificationKey("ek1", "reports", KeyAlgorithm.ED25519, ED_PUBLIC_RAW, scopes=frozenset({"r:w"})),
            VerificationKey("ek-pem", "reports", KeyAlgorithm.ED25519, ED_PUBLIC_PEM),
            VerificationKey("hk-expired", "billing", KeyAlgorithm.HMAC_SHA256, HMAC_SECRET, expires_at=NOW - 1),
        ]
    )


@dataclass
class Outgoing:
    """The request shape the library signs: method, encoded absolute URL, mutable headers."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)


class Sha512Digest(ContentDigest):
    algorithm = "sha-512"


class Sha512Signer(HTTPMessageSigner):
    content_digest_class = Sha512Digest


def library_sign(
    method: str,
    url: str,
    *,
    key_id: str = "hk1",
    algorithm: type[HTTPSignatureAlgorithm] = algorithms.HMAC_SHA256,
    key: Any = HMAC_SECRET,
    body: bytes | None = None,
    components: tuple[str, ...] = DEFAULT_COMPONENTS,
    created: float = NOW,
    expires: float | None = None,
    nonce: str | None = None,
    tag: str | None = None,
    label: str | None = None,
    headers: dict[str, str] | None = None,
    signer_class: type[HTTPMessageSigner] = HTTPMessageSigner,
) -> dict[str, str]:
    """Sign with the reference library; return every header to send."""
    message = Outgoing(method, url, dict(headers or {}))
    signer = signer_class(
        signature_algorithm=algorithm, key_resolver=MappingKeyResolver(public_keys={}, private_keys={key_id: key})
    )
    signer.sign(
        message,
        key_id=key_id,
        created=datetime.fromtimestamp(created, tz=UTC),
        expires=None if expires is None else datetime.fromtimestamp(expires, tz=UTC),
        nonce=nonce,
        tag=tag,
        label=label,
        covered_component_ids=components,
        body=body,
    )
    return message.headers


async def send(
    client: AuthClient, method: str, target: str, headers: dict[str, str], body: bytes | None = None
) -> dict[str, Any]:
    """Send exactly ``target`` (path and query as encoded) with these headers; return the decision."""
    url = URL(str(client.make_url("")).rstrip("/") + target, encoded=True)
    async with client.session.request(method, url, headers=headers, data=body) as response:
        assert response.status == 200, await response.text()
        result: dict[str, Any] = await response.json()
        return result


def origin(client: AuthClient) -> str:
    return str(client.make_url("")).rstrip("/")


# A case builds the headers from the server's origin (the signed authority must be the one requested).
Build = Callable[[str], dict[str, str]]


@dataclass(frozen=True)
class Case:
    id: str
    build: Build
    expect: str  # "none", "ok" or the reason code
    method: str = "GET"
    target: str = "/v1/bill/7?page=2"
    body: bytes | None = None
    subject: str = "service:billing"


def _strip_param(headers: dict[str, str], name: str) -> dict[str, str]:
    headers = dict(headers)
    headers["Signature-Input"] = re.sub(rf";{name}=[^;]*", "", headers["Signature-Input"])
    return headers


def _with(headers: dict[str, str], **changes: str) -> dict[str, str]:
    out = dict(headers)
    for name, value in changes.items():
        out[name.replace("_", "-")] = value
    return out


def _without(headers: dict[str, str], name: str) -> dict[str, str]:
    return {key: value for key, value in headers.items() if key.lower() != name.lower()}


GET = "/v1/bill/7?page=2"
BODY = b'{"amount": 42}'

CASES = [
    # not responsible
    Case("no-signature-headers", lambda o: {}, "none"),
    Case("other-auth-only", lambda o: {"Authorization": "Bearer abc"}, "none"),
    # malformed
    Case("input-without-signature", lambda o: _without(library_sign("GET", o + GET), "Signature"), "httpsig.malformed"),
    Case(
        "signature-without-input",
        lambda o: _without(library_sign("GET", o + GET), "Signature-Input"),
        "httpsig.malformed",
    ),
    Case(
        "input-not-structured",
        lambda o: _with(library_sign("GET", o + GET), Signature_Input='sig1=("@method"'),
        "httpsig.malformed",
    ),
    Case(
        "input-not-inner-list",
        lambda o: {"Signature-Input": "pyhms=1", "Signature": "pyhms=:AAAA:"},
        "httpsig.malformed",
    ),
    Case(
        "signature-not-bytes",
        lambda o: _with(library_sign("GET", o + GET), Signature='pyhms="abc"'),
        "httpsig.malformed",
    ),
    Case("labels-differ", lambda o: _with(library_sign("GET", o + GET), Signature="other=:AAAA:"), "httpsig.malformed"),
    Case(
        "duplicate-label",
        lambda o: _with(
            library_sign("GET", o + GET),
            Signature_Input=library_sign("GET", o + GET)["Signature-Input"]
            + ", "
            + library_sign("GET", o + GET)["Signature-Input"],
        ),
        "httpsig.malformed",
    ),
    Case(
        "unknown-parameter",
        lambda o: _with(
            library_sign("GET", o + GET), Signature_Input=library_sign("GET", o + GET)["Signature-Input"] + ";foo=1"
        ),
        "httpsig.malformed",
    ),
    Case(
        "created-is-a-string",
        lambda o: _with(
            library_sign("GET", o + GET),
            Signature_Input=re.sub(r"created=\d+", 'created="1"', library_sign("GET", o + GET)["Signature-Input"]),
        ),
        "httpsig.malformed",
    ),
    Case("no-keyid", lambda o: _strip_param(library_sign("GET", o + GET), "keyid"), "httpsig.malformed"),
    Case(
        "alg-is-a-token",
        lambda o: _with(
            library_sign("GET", o + GET),
            Signature_Input=library_sign("GET", o + GET)["Signature-Input"].replace(
                'alg="hmac-sha256"', "alg=hmac-sha256"
            ),
        ),
        "httpsig.malformed",
    ),
    Case(
        "covered-header-absent",
        lambda o: _without(
            library_sign("GET", o + GET, components=(*DEFAULT_COMPONENTS, "x-tenant"), headers={"X-Tenant": "a"}),
            "X-Tenant",
        ),
        "httpsig.malformed",
    ),
    Case(
        "covers-status",
        lambda o: {
            "Signature-Input": 'pyhms=("@method" "@authority" "@path" "@query" "@status")'
            + ';created=1759742876;keyid="hk1"',
            "Signature": "pyhms=:AAAA:",
        },
        "httpsig.malformed",
    ),
    # time
    Case("created-missing", lambda o: _strip_param(library_sign("GET", o + GET), "created"), "httpsig.created_missing"),
    Case("created-in-future", lambda o: library_sign("GET", o + GET, created=NOW + 31), "httpsig.skew"),
    Case("too-old", lambda o: library_sign("GET", o + GET, created=NOW - 331), "httpsig.expired"),
    Case(
        "expires-passed", lambda o: library_sign("GET", o + GET, created=NOW - 100, expires=NOW - 31), "httpsig.expired"
    ),
    # coverage
    Case(
        "query-not-covered",
        lambda o: library_sign("GET", o + GET, components=("@method", "@authority", "@path")),
        "httpsig.components_missing",
    ),
    Case(
        "target-uri-only",
        lambda o: library_sign("GET", o + GET, components=("@target-uri",)),
        "httpsig.components_missing",
    ),
    Case(
        "body-without-digest",
        lambda o: library_sign("POST", o + GET),
        "httpsig.digest_missing",
        method="POST",
        body=BODY,
    ),
    # keys
    Case("unknown-keyid", lambda o: library_sign("GET", o + GET, key_id="nope"), "httpsig.unknown_key"),
    Case("expired-key", lambda o: library_sign("GET", o + GET, key_id="hk-expired"), "httpsig.unknown_key"),
    Case(
        "alg-differs-from-key",
        lambda o: library_sign("GET", o + GET, key_id="hk1", algorithm=algorithms.ED25519, key=ED_PRIVATE),
        "httpsig.alg_mismatch",
    ),
    # signature
    Case("wrong-secret", lambda o: library_sign("GET", o + GET, key=b"x" * 64), "httpsig.bad_signature"),
    Case("method-changed", lambda o: library_sign("GET", o + GET), "httpsig.bad_signature", method="DELETE"),
    Case("path-changed", lambda o: library_sign("GET", o + GET), "httpsig.bad_signature", target="/v1/bill/8?page=2"),
    Case("query-changed", lambda o: library_sign("GET", o + GET), "httpsig.bad_signature", target="/v1/bill/7?page=3"),
    Case(
        "query-added",
        lambda o: library_sign("GET", o + "/v1/bill/7"),
        "httpsig.bad_signature",
        target="/v1/bill/7?admin=1",
    ),
    Case("authority-changed", lambda o: library_sign("GET", "http://billing.internal" + GET), "httpsig.bad_signature"),
    Case(
        "ed25519-wrong-key",
        lambda o: library_sign(
            "GET", o + GET, key_id="ek1", algorithm=algorithms.ED25519, key=Ed25519PrivateKey.generate()
        ),
        "httpsig.bad_signature",
        subject="service:reports",
    ),
    Case(
        "digest-swapped-for-the-new-body",
        lambda o: _with(library_sign("POST", o + GET, body=BODY), Content_Digest=content_digest(b"{}")),
        "httpsig.bad_signature",
        method="POST",
        body=b"{}",
    ),
    # body
    Case(
        "body-changed",
        lambda o: library_sign("POST", o + GET, body=BODY),
        "httpsig.digest_mismatch",
        method="POST",
        body=b'{"amount": 4200}',
    ),
    Case(
        "body-dropped",
        lambda o: library_sign("POST", o + GET, body=BODY),
        "httpsig.digest_mismatch",
        method="POST",
        body=b"",
    ),
    # valid
    Case("valid-hmac-get", lambda o: library_sign("GET", o + GET), "ok"),
    Case("valid-hmac-post-body", lambda o: library_sign("POST", o + GET, body=BODY), "ok", method="POST", body=BODY),
    Case(
        "valid-hmac-sha512-digest",
        lambda o: library_sign("PUT", o + GET, body=BODY, signer_class=Sha512Signer),
        "ok",
        method="PUT",
        body=BODY,
    ),
    Case(
        "valid-ed25519-post",
        lambda o: library_sign("POST", o + GET, key_id="ek1", algorithm=algorithms.ED25519, key=ED_PRIVATE, body=BODY),
        "ok",
        method="POST",
        body=BODY,
        subject="service:reports",
    ),
    Case(
        "valid-ed25519-pem-key",
        lambda o: library_sign("GET", o + GET, key_id="ek-pem", algorithm=algorithms.ED25519, key=ED_PRIVATE),
        "ok",
        subject="service:reports",
    ),
    Case("valid-empty-query", lambda o: library_sign("GET", o + "/v1/bill/7"), "ok", target="/v1/bill/7"),
    Case(
        "valid-encoded-path-and-query",
        lambda o: library_sign("GET", o + "/v1/a%20b/%7Euser?q=a%2Bb&empty=&x=%C3%A9"),
        "ok",
        target="/v1/a%20b/%7Euser?q=a%2Bb&empty=&x=%C3%A9",
    ),
    Case(
        "valid-more-components",
        lambda o: library_sign(
            "GET",
            o + GET,
            components=(
                *DEFAULT_COMPONENTS,
                "@target-uri",
                "@scheme",
                "@request-target",
                '"@query-param";name="page"',
                "content-type",
                '"x-list";bs',
            ),
            headers={"Content-Type": "application/json", "X-List": "a, b"},
        ),
        "ok",
    ),
    Case(
        "valid-sf-and-key-components",
        lambda o: library_sign(
            "POST",
            o + GET,
            body=BODY,
            components=(*DEFAULT_COMPONENTS, '"content-digest";sf', '"x-dict";key="a"'),
            headers={"X-Dict": "a=1;p, b=2"},
        ),
        "ok",
        method="POST",
        body=BODY,
    ),
    Case(
        "alg-removed-after-signing",
        lambda o: _strip_param(library_sign("GET", o + GET), "alg"),
        "httpsig.bad_signature",
    ),
    Case("valid-near-max-age", lambda o: library_sign("GET", o + GET, created=NOW - 320), "ok"),
    Case("valid-slightly-future", lambda o: library_sign("GET", o + GET, created=NOW + 29), "ok"),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_rfc9421_table(auth_client: AuthClientFactory, case: Case) -> None:
    client = await auth_client(HttpSignatureAuthenticator(service_keys(), clock=FakeClock(NOW)))
    result = await send(client, case.method, case.target, case.build(origin(client)), case.body)
    if case.expect == "none":
        assert result["outcome"] == "none", result
    elif case.expect == "ok":
        assert result["outcome"] == "principal", result
        assert result["subject"] == case.subject
        assert result["method"] == "rfc9421"
        assert result["credential_kind"] == "service_key"
    else:
        assert result["outcome"] == "error", result
        assert result["reason"] == case.expect, result
        assert result["status"] == 401
        assert result["www_authenticate"] == 'Signature realm="gateway"'


async def test_signature_without_alg_verifies_when_signed_without_it(auth_client: AuthClientFactory) -> None:
    client = await auth_client(HttpSignatureAuthenticator(service_keys(), clock=FakeClock(NOW)))
    message = Outgoing("GET", origin(client) + GET)
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.HMAC_SHA256,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={"hk1": HMAC_SECRET}),
    )
    signer.sign(
        message,
        key_id="hk1",
        created=datetime.fromtimestamp(NOW, tz=UTC),
        include_alg=False,
        covered_component_ids=DEFAULT_COMPONENTS,
    )
    assert "alg=" not in message.headers["Signature-Input"]
    result = await send(client, "GET", GET, message.headers)
    assert result["outcome"] == "principal", result


async def test_library_signed_body_is_accepted_and_the_same_request_with_another_body_refused(
    auth_client: AuthClientFactory,
) -> None:
    """The issue's acceptance test, stated plainly."""
    client = await auth_client(HttpSignatureAuthenticator(service_keys(), clock=FakeClock(NOW)))
    headers = library_sign("POST", origin(client) + "/v1/payments", body=b'{"to": "alice", "amount": 10}')
    accepted = await send(client, "POST", "/v1/payments", headers, b'{"to": "alice", "amount": 10}')
    refused = await send(client, "POST", "/v1/payments", headers, b'{"to": "mallory", "amount": 10}')
    assert accepted["outcome"] == "principal"
    assert accepted["buffered_body"] == '{"to": "alice", "amount": 10}'  # the proxy forwards these bytes
    assert refused["reason"] == "httpsig.digest_mismatch"


async def test_client_codes_hide_which_check_failed(auth_client: AuthClientFactory) -> None:
    client = await auth_client(HttpSignatureAuthenticator(service_keys(), clock=FakeClock(NOW)))
    o = origin(client)
    results = [
        await send(client, "GET", GET, library_sign("GET", o + GET, key_id="nope")),
        await send(client, "GET", GET, library_sign("GET", o + GET, key=b"y" * 64)),
        await send(client, "GET", GET, library_sign("GET", o + GET, algorithm=algorithms.ED25519, key=ED_PRIVATE)),
    ]
    assert [r["reason"] for r in results] == ["httpsig.unknown_key", "httpsig.bad_signature", "httpsig.alg_mismatch"]
    assert {r["code"] for r in results} == {"httpsig.invalid_signature"}
    assert len({r["detail"] for r in results}) == 1


async def test_body_over_the_limit_is_413_and_read_only_after_the_signature_verified(
    auth_client: AuthClientFactory,
) -> None:
    authenticator = HttpSignatureAuthenticator(service_keys(), max_body=1000, clock=FakeClock(NOW))
    client = await auth_client(authenticator)
    o = origin(client)
    big = b"x" * 1001
    too_large = await send(client, "POST", GET, library_sign("POST", o + GET, body=big), big)
    assert (too_large["reason"], too_large["status"], too_large["code"]) == (
        "httpsig.body_too_large",
        413,
        "httpsig.body_too_large",
    )
    # A forged signature with a huge body is refused on the headers alone: the body is never buffered.
    forged = await send(client, "POST", GET, library_sign("POST", o + GET, body=big, key=b"z" * 64), big)
    assert forged["reason"] == "httpsig.bad_signature"
    assert forged.get("buffered_body") is None
    exact = b"y" * 1000
    at_limit = await send(client, "POST", GET, library_sign("POST", o + GET, body=exact), exact)
    assert at_limit["outcome"] == "principal"


async def test_chunked_body_is_verified(auth_client: AuthClientFactory) -> None:
    client = await auth_client(HttpSignatureAuthenticator(service_keys(), clock=FakeClock(NOW)))
    body = b"chunk-" * 5000
    headers = library_sign("POST", origin(client) + GET, body=body)

    async def chunks() -> Any:
        for offset in range(0, len(body), 4096):
            yield body[offset : offset + 4096]

    url = URL(origin(client) + GET, encoded=True)
    async with client.session.post(url, headers=headers, data=chunks()) as response:
        result = await response.json()
    assert result["outcome"] == "principal", result


async def test_nonce_is_accepted_once_per_key(auth_client: AuthClientFactory) -> None:
    clock = FakeClock(NOW)
    nonces = MemoryNonces(clock=clock)
    client = await auth_client(HttpSignatureAuthenticator(service_keys(), nonces=nonces, clock=clock))
    o = origin(client)
    headers = library_sign("GET", o + GET, nonce="n-1", created=NOW - 100)
    first = await send(client, "GET", GET, headers)
    replay = await send(client, "GET", GET, headers)
    other_key = await send(
        client,
        "GET",
        GET,
        library_sign("GET", o + GET, nonce="n-1", key_id="ek1", algorithm=algorithms.ED25519, key=ED_PRIVATE),
    )
    assert first["outcome"] == "principal"
    assert replay["reason"] == "httpsig.replay"
    assert other_key["outcome"] == "principal"  # nonces are scoped per key
    # Remembered until created + max_age + skew: 1759742876 - 100 + 300 + 30 - now = 230 s.
    assert nonces.ttls[0] == 230


async def test_nonce_can_be_required(auth_client: AuthClientFactory) -> None:
    clock = FakeClock(NOW)
    authenticator = HttpSignatureAuthenticator(
        service_keys(), nonces=MemoryNonces(clock=clock), require_nonce=True, clock=clock
    )
    client = await auth_client(authenticator)
    without = await send(client, "GET", GET, library_sign("GET", origin(client) + GET))
    assert without["reason"] == "httpsig.nonce_missing"


async def test_tag_selects_this_gateways_signature_among_several(auth_client: AuthClientFactory) -> None:
    client = await auth_client(HttpSignatureAuthenticator(service_keys(), tag="gateway", clock=FakeClock(NOW)))
    o = origin(client)
    message = Outgoing("GET", o + GET)
    for key_id, key, tag, label in (("other", b"q" * 64, "upstream", "up"), ("hk1", HMAC_SECRET, "gateway", "gw")):
        signer = HTTPMessageSigner(
            signature_algorithm=algorithms.HMAC_SHA256,
            key_resolver=MappingKeyResolver(public_keys={}, private_keys={key_id: key}),
        )
        signer.sign(
            message,
            key_id=key_id,
            created=datetime.fromtimestamp(NOW, tz=UTC),
            tag=tag,
            label=label,
            covered_component_ids=DEFAULT_COMPONENTS,
            append_if_signature_exists=True,
        )
    result = await send(client, "GET", GET, message.headers)
    assert result["outcome"] == "principal", result
    only_upstream = library_sign("GET", o + GET, key_id="other", key=b"q" * 64, tag="upstream")
    assert (await send(client, "GET", GET, only_upstream))["outcome"] == "none"


async def test_parameters_read_again_still_verify_each_request_on_its_own(auth_client: AuthClientFactory) -> None:
    # Requests of one key within one second share their parameter text, parsed once: each is still
    # checked against its own signature base, and a tag or keyid the text lacks still decides.
    client = await auth_client(HttpSignatureAuthenticator(service_keys(), tag="gateway", clock=FakeClock(NOW)))
    o = origin(client)
    for target in (GET, "/v1/bill/8", GET):
        assert (await send(client, "GET", target, library_sign("GET", o + target, tag="gateway")))["outcome"] == (
            "principal"
        )
    replayed_elsewhere = library_sign("GET", o + GET, tag="gateway")
    refused = await send(client, "GET", "/v1/bill/8", replayed_elsewhere)
    assert refused["reason"] == "httpsig.bad_signature"
    for _ in range(2):
        assert (await send(client, "GET", GET, library_sign("GET", o + GET, tag="other")))["outcome"] == "none"


async def test_required_components_are_configurable(auth_client: AuthClientFactory) -> None:
    authenticator = HttpSignatureAuthenticator(
        service_keys(), required_components=("@method", "@target-uri", "x-tenant"), clock=FakeClock(NOW)
    )
    client = await auth_client(authenticator)
    o = origin(client)
    ok = library_sign("GET", o + GET, components=("@method", "@target-uri", "x-tenant"), headers={"X-Tenant": "acme"})
    default_only = library_sign("GET", o + GET)
    assert (await send(client, "GET", GET, ok))["outcome"] == "principal"
    assert (await send(client, "GET", GET, default_only))["reason"] == "httpsig.components_missing"


async def test_max_age_and_skew_are_configurable(auth_client: AuthClientFactory) -> None:
    client = await auth_client(
        HttpSignatureAuthenticator(service_keys(), max_age=10, clock_skew=0, clock=FakeClock(NOW))
    )
    o = origin(client)
    assert (await send(client, "GET", GET, library_sign("GET", o + GET, created=NOW - 10)))["outcome"] == "principal"
    assert (await send(client, "GET", GET, library_sign("GET", o + GET, created=NOW - 11)))[
        "reason"
    ] == "httpsig.expired"
    assert (await send(client, "GET", GET, library_sign("GET", o + GET, created=NOW + 1)))["reason"] == "httpsig.skew"


async def test_principal_carries_the_keys_tenant_and_scopes(auth_client: AuthClientFactory) -> None:
    client = await auth_client(HttpSignatureAuthenticator(service_keys(), clock=FakeClock(NOW)))
    o = origin(client)
    hmac_result = await send(client, "GET", GET, library_sign("GET", o + GET))
    ed_result = await send(
        client, "GET", GET, library_sign("GET", o + GET, key_id="ek1", algorithm=algorithms.ED25519, key=ED_PRIVATE)
    )
    assert (hmac_result["tenant"], hmac_result["credential_id"], hmac_result["service_id"]) == (
        "acme",
        "hk1",
        "billing",
    )
    assert (ed_result["scopes"], ed_result["credential_id"], ed_result["service_id"]) == (["r:w"], "ek1", "reports")


async def test_malformed_and_stale_signatures_cost_no_key_lookup(auth_client: AuthClientFactory) -> None:
    keys = service_keys()
    client = await auth_client(HttpSignatureAuthenticator(keys, clock=FakeClock(NOW)))
    o = origin(client)
    await send(client, "GET", GET, {"Signature-Input": "x=(", "Signature": "x=:AA==:"})
    await send(client, "GET", GET, library_sign("GET", o + GET, created=NOW - 5000))
    await send(client, "GET", GET, library_sign("GET", o + GET, components=("@method",)))
    assert keys.lookups == 0


def test_configuration_errors() -> None:
    with pytest.raises(ValueError, match="nonce store"):
        HttpSignatureAuthenticator(service_keys(), require_nonce=True)
    with pytest.raises(ValueError, match="lowercase"):
        HttpSignatureAuthenticator(service_keys(), required_components=("Content-Type",))
    assert parse_component_ids(['"@query-param";name="id"']) == (("@query-param", frozenset({("name", "id")})),)


def test_content_digest_helper_matches_rfc9530_example() -> None:
    # RFC 9530 §2 example: {"hello": "world"} followed by a newline.
    assert content_digest(b'{"hello": "world"}\n') == "sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:"
    expected = base64.b64encode(hashlib.sha512(b"").digest()).decode()
    assert content_digest(b"", "sha-512") == f"sha-512=:{expected}:"


# -- interoperability, property-based ----------------------------------------------------------

_PCHAR = st.sampled_from(list("abcXYZ019-._~!$&'()*+,;=:@") + ["%20", "%2F", "%C3%A9", "%7E", "%25"])
_SEGMENT = st.lists(_PCHAR, min_size=0, max_size=8).map("".join)
_PATH = st.lists(_SEGMENT, min_size=1, max_size=4).map(lambda segments: "/" + "/".join(segments))
# aiohttp's client never sends an empty query ("/p?" goes out as "/p"), so a query has at least one character.
_QUERY = st.one_of(
    st.none(),
    st.lists(
        st.sampled_from(["a", "b", "=", "&", "+", "%20", "/", "?", ":", "@", "%3D", "x"]), min_size=1, max_size=10
    ).map("".join),
)
_FIELD = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=30)


@pytest.fixture
async def verifying_client(auth_client: AuthClientFactory) -> AuthClient:
    return await auth_client(HttpSignatureAuthenticator(service_keys(), clock=FakeClock(NOW)))


# One server for every example (the authenticator is stateless here): that is what the health check warns about.
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
    path=_PATH,
    query=_QUERY,
    field_value=_FIELD,
    body=st.one_of(st.none(), st.binary(min_size=1, max_size=300)),
)
async def test_any_request_the_library_signs_verifies(
    verifying_client: AuthClient, method: str, path: str, query: str | None, field_value: str, body: bytes | None
) -> None:
    target = path if query is None else f"{path}?{query}"
    components = (*DEFAULT_COMPONENTS, "@target-uri", "@request-target", "x-field")
    headers = library_sign(
        method, origin(verifying_client) + target, components=components, headers={"X-Field": field_value}, body=body
    )
    result = await send(verifying_client, method, target, headers, body)
    assert result["outcome"] == "principal", (target, result)
