"""RFC 7662 introspection and the JSON validate endpoint, against the fake identity service over HTTP."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.backend.client import BackendClient, BackendLimits
from gateway.backend.decisions import FieldMap
from gateway.backend.errors import BackendError, BackendRejected, BackendTimeout, BadBackendResponse
from gateway.backend.introspect import ClientAuth, JsonValidation, Rfc7662Introspection, read_secret_file
from tests.fakes.identity_service import IdentityService


@pytest.fixture
async def client() -> AsyncIterator[BackendClient]:
    backend = BackendClient(BackendLimits(timeout=0.5, fail_max=100, max_response=64 * 1024))
    yield backend
    await backend.close()


async def test_rfc7662_sends_a_form_with_the_token_and_hint(client: BackendClient, identity: IdentityService) -> None:
    identity.add("opaque-1", "alice", scope="orders:read orders:write", client_id="web", tenant="acme", jti="t-1")
    checker = Rfc7662Introspection(client, f"{identity.issuer}/introspect")

    decision = await checker.check("opaque-1")

    assert identity.seen[-1]["form"] == {"token": "opaque-1", "token_type_hint": "access_token"}
    assert decision.active and decision.subject == "alice" and decision.tenant == "acme"
    assert decision.scopes == {"orders:read", "orders:write"}
    assert decision.client_id == "web" and decision.token_id == "t-1"
    assert decision.expires_at is not None and decision.expires_at > time.time()


async def test_inactive_tokens_are_inactive(client: BackendClient, identity: IdentityService) -> None:
    checker = Rfc7662Introspection(client, f"{identity.issuer}/introspect")
    decision = await checker.check("unknown")
    assert not decision.active and decision.reason == "token.inactive"


async def test_basic_client_auth_form_encodes_both_parts(
    client: BackendClient, identity: IdentityService, tmp_path: Path
) -> None:
    # RFC 6749 §2.3.1: "gate:way" and "p@ss:w/rd" must survive the Basic encoding.
    identity.client_id, identity.client_secret = "gate:way", "p@ss:w/rd %"
    secret = tmp_path / "secret"
    secret.write_text("# the introspection client's secret\np@ss:w/rd %\n")
    auth = ClientAuth.from_file("basic", client_id="gate:way", secret_file=secret)
    identity.add("tok")
    checker = Rfc7662Introspection(client, f"{identity.issuer}/introspect", auth=auth)
    assert (await checker.check("tok")).active
    assert "p@ss" not in repr(auth)


async def test_bearer_client_auth(client: BackendClient, identity: IdentityService) -> None:
    identity.bearer = "gateway-access-token"
    identity.add("tok")
    good = Rfc7662Introspection(
        client, f"{identity.issuer}/introspect", auth=ClientAuth("bearer", secret="gateway-access-token")
    )
    assert (await good.check("tok")).active
    wrong = Rfc7662Introspection(client, f"{identity.issuer}/introspect", auth=ClientAuth("bearer", secret="nope"))
    with pytest.raises(BackendRejected, match="HTTP 401"):
        await wrong.check("tok")


def test_client_auth_needs_its_secret(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="client_id and a secret"):
        ClientAuth("basic", secret="x")
    empty = tmp_path / "empty"
    empty.write_text("\n# nothing\n")
    with pytest.raises(ValueError, match="holds no secret"):
        read_secret_file(empty)
    with pytest.raises(ValueError, match="cannot read"):
        read_secret_file(tmp_path / "missing")


@pytest.mark.parametrize(
    ("mode", "error", "message"),
    [
        ("garbage", BadBackendResponse, "not JSON"),
        ("missing_active", BadBackendResponse, "no 'active' field"),
        ("wrong_types", BadBackendResponse, "expected true or false"),
        ("huge", BadBackendResponse, "over 65536"),
        ("hang", BackendTimeout, "within 0.5s"),
    ],
)
async def test_bad_answers_are_failures_never_decisions(
    client: BackendClient,
    identity: IdentityService,
    mode: str,
    error: type[BackendError],
    message: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    identity.mode = mode
    identity.add("tok")
    checker = Rfc7662Introspection(client, f"{identity.issuer}/introspect")
    with pytest.raises(error, match=message):
        await checker.check("tok")
    assert client.breakers["introspection"].fail_counter == 1
    line = next(r for r in caplog.records if r.getMessage() == "auth backend call failed")
    assert line.__dict__["outcome"] == error.outcome and message in line.__dict__["detail"]
    assert "tok" not in line.__dict__["detail"]


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({"active": True, "sub": 5.5}, "expected a string"),
        ({"active": True, "sub": "a", "exp": "tomorrow"}, "expected Unix seconds"),
        ({"active": True, "sub": "a", "exp": True}, "expected Unix seconds"),
        ({"active": True, "sub": "a", "scope": {"a": 1}}, "expected a string or a list"),
        ({"active": True, "sub": "a", "scope": ["a", 1]}, "expected strings"),
        ({"active": True, "sub": "a", "aud": 3}, "expected a string or strings"),
        ({"active": True, "sub": "a", "tenant": ["x"]}, "expected a string"),
    ],
)
async def test_wrong_field_types_are_bad_answers(
    client: BackendClient, identity: IdentityService, answer: dict[str, object], message: str
) -> None:
    identity.tokens["tok"] = {k: v for k, v in answer.items() if k != "active"}  # the fake adds active: true
    checker = Rfc7662Introspection(client, f"{identity.issuer}/introspect")
    with pytest.raises(BadBackendResponse, match=message):
        await checker.check("tok")


async def test_an_audience_list_refuses_tokens_for_other_services(
    client: BackendClient, identity: IdentityService
) -> None:
    identity.add("for-us", aud=["gateway", "other"])
    identity.add("for-them", aud="billing")
    checker = Rfc7662Introspection(client, f"{identity.issuer}/introspect", audiences=["gateway"])
    assert (await checker.check("for-us")).active
    refused = await checker.check("for-them")
    assert not refused.active and refused.reason == "token.bad_audience"


async def test_an_active_answer_without_subject_is_not_accepted(
    client: BackendClient, identity: IdentityService
) -> None:
    identity.tokens["tok"] = {"client_id": "machine"}
    checker = Rfc7662Introspection(client, f"{identity.issuer}/introspect")
    decision = await checker.check("tok")
    assert not decision.active and decision.reason == "token.no_subject"


async def test_an_expired_exp_wins_over_active_true(client: BackendClient, identity: IdentityService) -> None:
    identity.tokens["tok"] = {"sub": "a", "exp": int(time.time()) - 5}
    checker = Rfc7662Introspection(client, f"{identity.issuer}/introspect")
    assert not (await checker.check("tok")).active


async def test_username_is_the_subject_when_sub_is_absent(client: BackendClient, identity: IdentityService) -> None:
    identity.tokens["tok"] = {"username": "bob"}
    checker = Rfc7662Introspection(client, f"{identity.issuer}/introspect")
    assert (await checker.check("tok")).subject == "bob"


# -- the JSON validate endpoint ---------------------------------------------------------------

VALIDATE_FIELDS = FieldMap(
    active=None, subject=("user.id",), tenant="org", scopes="permissions", expires_at="expiresAt", client_id=None
)


async def test_validate_posts_json_and_maps_nested_fields(client: BackendClient, identity: IdentityService) -> None:
    identity.add("opaque", "carol", tenant="acme", scope="a b")
    checker = JsonValidation(client, f"{identity.issuer}/validate", fields=VALIDATE_FIELDS)

    decision = await checker.check("opaque")

    assert identity.seen[-1]["json"] == {"token": "opaque"}
    assert decision.active and decision.subject == "carol" and decision.tenant == "acme"
    assert decision.scopes == {"a", "b"} and decision.expires_at is not None


async def test_validate_maps_invalid_statuses_to_inactive(client: BackendClient, identity: IdentityService) -> None:
    checker = JsonValidation(client, f"{identity.issuer}/validate", fields=VALIDATE_FIELDS)
    decision = await checker.check("unknown")  # the fake answers 401
    assert not decision.active
    assert client.breakers["introspection"].fail_counter == 0


async def test_validate_other_4xx_are_rejections(client: BackendClient, identity: IdentityService) -> None:
    checker = JsonValidation(
        client, f"{identity.issuer}/validate", fields=VALIDATE_FIELDS, invalid_statuses=frozenset({404})
    )
    with pytest.raises(BackendRejected, match="HTTP 401"):
        await checker.check("unknown")


async def test_validate_garbage_is_a_failure(client: BackendClient, identity: IdentityService) -> None:
    identity.mode = "garbage"
    checker = JsonValidation(client, f"{identity.issuer}/validate", fields=VALIDATE_FIELDS)
    with pytest.raises(BadBackendResponse, match="not JSON"):
        await checker.check("x")


async def test_a_redirect_is_not_followed(client: BackendClient, identity: IdentityService) -> None:
    identity.add("tok")
    checker = Rfc7662Introspection(client, f"{identity.issuer}/moved")  # 307 to /introspect
    with pytest.raises(BadBackendResponse, match="redirect"):
        await checker.check("tok")
    assert identity.calls["introspect"] == 0


async def test_another_status_is_a_rejection(client: BackendClient, identity: IdentityService) -> None:
    checker = Rfc7662Introspection(client, f"{identity.issuer}/jwks")  # GET only: POST answers 405
    with pytest.raises(BackendRejected, match="HTTP 405"):
        await checker.check("x")
