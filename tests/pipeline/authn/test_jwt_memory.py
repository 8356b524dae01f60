"""The JWT authenticator's memory of verified tokens, keyed by the Authorization header value.

A remembered answer is the one the full verification gave; it never outlives a
change of the provider's JWKS, and a request that the full path refuses for its
header shape (two Authorization headers) is still refused.
"""

from __future__ import annotations

import json
from typing import Any

from multidict import CIMultiDict

from gateway.pipeline.authn.jwks import JwksKeys
from gateway.pipeline.authn.jwt import JwtAuthenticator, JwtProvider
from tests.pipeline.authn.test_jwks import ISSUER, KEY_1, KEY_2, jwk, token
from tests.pipeline.conftest import AuthClientFactory, decide

JWKS_URL = "https://idp.example.com/.well-known/jwks.json"


class CountingJwks(JwksKeys):
    """JWKS keys from a document the test edits; counts the lookups (a remembered token makes none)."""

    def __init__(self, keys: list[dict[str, Any]]) -> None:
        self.document = {"keys": keys}
        self.lookups = 0

        async def fetch() -> tuple[str, bytes]:
            return JWKS_URL, json.dumps(self.document).encode()

        super().__init__(None, fetch=fetch, min_refresh_interval=0)

    async def key_for(self, kid: str | None) -> Any:
        self.lookups += 1
        return await super().key_for(kid)


def authenticator(keys: JwksKeys) -> JwtAuthenticator:
    return JwtAuthenticator([JwtProvider(issuer=ISSUER, audiences=("gateway",), algorithms=("RS256",), keys=keys)])


async def test_a_remembered_token_gives_the_verified_answer_without_a_key_lookup(
    auth_client: AuthClientFactory,
) -> None:
    keys = CountingJwks([jwk(KEY_1, "k1")])
    client = await auth_client(authenticator(keys))
    headers = {"Authorization": f"Bearer {token(KEY_1, 'k1')}"}
    first = await decide(client, "GET", "/", headers=headers)
    assert first["outcome"] == "principal"
    assert await decide(client, "GET", "/", headers=headers) == first
    assert keys.lookups == 1
    # Another spelling of the same token is another header value: verified once more, same answer.
    other = await decide(
        client, "GET", "/", headers={"Authorization": headers["Authorization"].replace("Bearer", "bearer")}
    )
    assert other == first
    assert keys.lookups == 2
    await keys.close()


async def test_a_jwks_refresh_that_changes_the_keys_ends_remembered_answers(auth_client: AuthClientFactory) -> None:
    keys = CountingJwks([jwk(KEY_1, "k1")])
    client = await auth_client(authenticator(keys))
    headers = {"Authorization": f"Bearer {token(KEY_1, 'k1')}"}
    assert (await decide(client, "GET", "/", headers=headers))["outcome"] == "principal"

    assert await keys.refresh()  # the same document: no change, the answer stays remembered
    assert keys.generation == 1
    assert (await decide(client, "GET", "/", headers=headers))["outcome"] == "principal"
    assert keys.lookups == 1

    keys.document["keys"].append(jwk(KEY_2, "k2"))  # a key rotated in: verified again, still good
    assert await keys.refresh()
    assert keys.generation == 2
    assert (await decide(client, "GET", "/", headers=headers))["outcome"] == "principal"
    assert keys.lookups == 2

    keys.document["keys"] = [jwk(KEY_2, "k2")]  # k1 withdrawn: the remembered answer goes with it
    assert await keys.refresh()
    result = await decide(client, "GET", "/", headers=headers)
    assert (result["outcome"], result["reason"]) == ("error", "jwt.kid_unknown")
    await keys.close()


async def test_two_authorization_headers_are_refused_even_if_one_value_is_remembered(
    auth_client: AuthClientFactory,
) -> None:
    keys = CountingJwks([jwk(KEY_1, "k1")])
    client = await auth_client(authenticator(keys))
    value = f"Bearer {token(KEY_1, 'k1')}"
    assert (await decide(client, "GET", "/", headers={"Authorization": value}))["outcome"] == "principal"
    twice = CIMultiDict([("Authorization", value), ("Authorization", value)])
    result = await decide(client, "GET", "/", headers=twice)
    assert (result["outcome"], result["reason"]) == ("error", "jwt.malformed")
    await keys.close()


async def test_without_a_cache_nothing_is_remembered(auth_client: AuthClientFactory) -> None:
    keys = CountingJwks([jwk(KEY_1, "k1")])
    jwt_authenticator = JwtAuthenticator(
        [JwtProvider(issuer=ISSUER, audiences=("gateway",), algorithms=("RS256",), keys=keys)], cache_size=0
    )
    client = await auth_client(jwt_authenticator)
    headers = {"Authorization": f"Bearer {token(KEY_1, 'k1')}"}
    for _ in range(2):
        assert (await decide(client, "GET", "/", headers=headers))["outcome"] == "principal"
    assert keys.lookups == 2
    assert jwt_authenticator._verified == {}
    await keys.close()
