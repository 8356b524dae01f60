"""JWT bearer tokens (PyJWT) from configured providers: issuer, audiences, algorithms, keys.

Hardening, beyond what PyJWT checks by default::

    token over max_token_length, not 3 segments, header over
      max_header_length, header not a JSON object              jwt.malformed
    alg not in the provider's list ("none" never is; HS* only
      with a shared secret, never with public keys)           jwt.alg_not_allowed
    jwk / x5c / x5u header, or a jku other than the
      provider's own JWKS URL (keys never come from the token)  jwt.bad_header
    kid unknown after one rate-limited JWKS refresh            jwt.kid_unknown   (client reads invalid_signature)
    key type or JWK alg does not fit the token's alg,
      signature does not verify                                jwt.bad_signature (client reads invalid_signature)
    exp / nbf / iat, with leeway                               jwt.expired, jwt.not_yet_valid
    aud / iss                                                  jwt.bad_audience, jwt.bad_issuer
    required claims (exp, iss, aud, sub by default)            jwt.missing_claim

With several providers the token's (unverified) ``iss`` picks one; the
signature and every claim are then checked against that provider only.

A verified token is remembered (bounded, ``cache_size``) for at most
``cache_ttl`` seconds, never past its ``exp`` (plus leeway) and never past a
change of its provider's JWKS (a refresh that brings a different key set): a
client presents the same token on every request, and verifying it again costs an
RSA or EC operation plus PyJWT's parsing (~250 µs for RS256 here) for the same
answer. The memory is keyed by the whole ``Authorization`` header value: a hit
needs neither the token68 check of :func:`bearer_token` nor a hash of the token
(both are functions of that value, and an entry is only made for a value that
passed them), so it costs one dict lookup and a clock read. The TTL bounds how
long a token keeps working after a key was withdrawn at a provider whose JWKS
the gateway has not fetched again yet.
Claims map to the principal: ``sub`` -> subject, the configured tenant claim ->
tenant, ``scope`` (space-separated) and ``scp`` (list or string) -> scopes.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import jwt as pyjwt
from aiohttp.hdrs import AUTHORIZATION
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.exceptions import (
    DecodeError,
    ExpiredSignatureError,
    ImmatureSignatureError,
    InvalidAlgorithmError,
    InvalidAudienceError,
    InvalidIssuedAtError,
    InvalidIssuerError,
    InvalidKeyError,
    InvalidSignatureError,
    MissingRequiredClaimError,
    PyJWTError,
)

from gateway.pipeline.authn.bearer import (
    BEARER_CHALLENGE,
    MalformedBearer,
    bearer_error_challenge,
    bearer_token,
    looks_like_jwt,
)
from gateway.pipeline.authn.jwks import JwksKeys, JwtKey, JwtKeySource
from gateway.pipeline.base import AuthError, AuthMethod, CredentialKind, Principal, RequestView

HMAC_ALGORITHMS: Final = frozenset({"HS256", "HS384", "HS512"})
PUBLIC_KEY_ALGORITHMS: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
DEFAULT_REQUIRED_CLAIMS: Final = ("exp", "iss", "aud", "sub")
DEFAULT_MAX_TOKEN_LENGTH: Final = 8192
DEFAULT_MAX_HEADER_LENGTH: Final = 1024
MAX_KID_LENGTH: Final = 256
DEFAULT_CACHE_SIZE: Final = 10_000
DEFAULT_CACHE_TTL: Final = 60.0
# Header parameters that would let a token bring or point at its own key (RFC 8725 §3.10 spirit).
_KEY_CARRYING_HEADERS: Final = ("jwk", "x5c", "x5u")
_EC_CURVES: Final = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}


@dataclass(frozen=True, slots=True)
class JwtProvider:
    """One token issuer the gateway trusts, and how its tokens are checked.

    Raises ``ValueError`` at construction for a configuration that would be
    unsafe: no algorithm, ``none``, HS* with public keys or the reverse, no
    audience while ``aud`` is required.
    """

    issuer: str
    audiences: tuple[str, ...]
    algorithms: tuple[str, ...]
    keys: JwtKeySource
    leeway: float = 30.0
    required_claims: tuple[str, ...] = DEFAULT_REQUIRED_CLAIMS
    tenant_claim: str | None = "tenant"
    name: str = ""

    def __post_init__(self) -> None:
        label = self.name or self.issuer
        if not self.issuer:
            raise ValueError("a JWT provider needs an issuer")
        if not self.algorithms:
            raise ValueError(f"JWT provider {label!r}: no algorithm allowed")
        unknown = set(self.algorithms) - HMAC_ALGORITHMS - PUBLIC_KEY_ALGORITHMS
        if unknown:
            raise ValueError(f"JWT provider {label!r}: algorithms not allowed: {sorted(unknown)} ('none' never is)")
        allowed = HMAC_ALGORITHMS if self.keys.symmetric else PUBLIC_KEY_ALGORITHMS
        wrong = set(self.algorithms) - allowed
        if wrong:
            kind = "a shared secret" if self.keys.symmetric else "public keys"
            raise ValueError(f"JWT provider {label!r}: {sorted(wrong)} cannot be used with {kind}")
        if not self.audiences and "aud" in self.required_claims:
            raise ValueError(f"JWT provider {label!r}: 'aud' is required but no audience is configured")
        if self.leeway < 0:
            raise ValueError(f"JWT provider {label!r}: leeway must not be negative")


class JwtAuthenticator:
    """Verifies ``Authorization: Bearer <JWT>`` against the configured providers."""

    name: Final = AuthMethod.JWT
    challenge: Final = BEARER_CHALLENGE

    def __init__(
        self,
        providers: Sequence[JwtProvider],
        *,
        max_token_length: int = DEFAULT_MAX_TOKEN_LENGTH,
        max_header_length: int = DEFAULT_MAX_HEADER_LENGTH,
        cache_size: int = DEFAULT_CACHE_SIZE,
        cache_ttl: float = DEFAULT_CACHE_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not providers:
            raise ValueError("a JWT authenticator needs at least one provider")
        self.providers = tuple(providers)
        self.by_issuer = {provider.issuer: provider for provider in self.providers}
        if len(self.by_issuer) != len(self.providers):
            raise ValueError("two JWT providers share an issuer")
        self.max_token_length = max_token_length
        self.max_header_length = max_header_length
        # One decoder per authenticator; its options never change between requests.
        self._decoder = pyjwt.PyJWT()
        self.cache_size = cache_size
        self.cache_ttl = cache_ttl
        self.clock = clock
        # Authorization header value -> (principal, good until, the JWKS it was verified with or None for
        # static keys, that JWKS's generation then). A str key: Python's str hash is keyed per process
        # (SipHash), so clients cannot flood it with colliding values; a hit compares the whole value.
        self._verified: dict[str, tuple[Principal, float, JwksKeys | None, int]] = {}

    @staticmethod
    def _fail(reason: str, log_detail: str) -> AuthError:
        return AuthError(reason, log_detail=log_detail, www_authenticate=bearer_error_challenge())

    async def authenticate(self, request: RequestView) -> Principal | None:
        headers = request.request.headers  # RequestView's properties are Python calls: read the request itself
        # The remembered answer for this exact header value. One Authorization header only: with more,
        # bearer_token refuses the request, and only a value that bearer_token accepted is remembered.
        values: Sequence[str] = headers.getall(AUTHORIZATION, ())  # an istr: no case-folding of the name
        if len(values) == 1:
            remembered = self._verified.get(values[0])
            if remembered is not None:
                principal, until, jwks, generation = remembered
                if self.clock() < until and (jwks is None or jwks.generation == generation):
                    return principal
                del self._verified[values[0]]
        try:
            token = bearer_token(headers)
        except MalformedBearer as exc:
            raise self._fail("jwt.malformed", str(exc)) from None
        if token is None or not looks_like_jwt(token):
            return None
        if len(token) > self.max_token_length:
            raise self._fail("jwt.malformed", f"token longer than {self.max_token_length} characters")
        segments = token.split(".")
        if len(segments) != 3:
            raise self._fail("jwt.malformed", f"{len(segments)} segments, a JWS has 3")
        if len(segments[0]) > self.max_header_length:
            raise self._fail("jwt.malformed", f"header longer than {self.max_header_length} characters")
        header = _json_segment(segments[0])
        if header is None:
            raise self._fail("jwt.malformed", "header is not a base64url JSON object")

        provider = self._provider(segments[1])
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in provider.algorithms:
            raise self._fail("jwt.alg_not_allowed", f"alg {str(alg)[:20]!r} not allowed for {provider.issuer}")
        for name in _KEY_CARRYING_HEADERS:
            if name in header:
                raise self._fail("jwt.bad_header", f"token carries a {name!r} header")
        if "jku" in header and header["jku"] != provider.keys.jwks_url:
            raise self._fail("jwt.bad_header", "token names a jku other than the provider's JWKS URL")
        kid = header.get("kid")
        if kid is not None and (not isinstance(kid, str) or len(kid) > MAX_KID_LENGTH):
            raise self._fail("jwt.malformed", "kid is not a short string")

        found = await provider.keys.key_for(kid)
        # The key set the key came from (nothing suspends from here on): a remembered answer lasts as long.
        jwks = provider.keys if isinstance(provider.keys, JwksKeys) else None
        generation = jwks.generation if jwks is not None else 0
        if found is None:
            raise self._fail("jwt.kid_unknown", f"no key {kid!r} for {provider.issuer}")
        key, key_alg = found
        if (key_alg is not None and key_alg != alg) or not _key_fits(key, alg):
            raise self._fail("jwt.bad_signature", f"key {kid!r} of {provider.issuer} cannot verify {alg}")

        claims = self._decode(token, key, alg, provider)
        principal = _principal(claims, provider)
        if self.cache_size:
            self._remember(values[0], principal, provider, jwks, generation)
        return principal

    def _remember(
        self, header: str, principal: Principal, provider: JwtProvider, jwks: JwksKeys | None, generation: int
    ) -> None:
        until = self.clock() + self.cache_ttl
        if principal.expires_at is not None:
            until = min(until, principal.expires_at + provider.leeway)  # PyJWT accepts it until exp + leeway
        if len(self._verified) >= self.cache_size:
            del self._verified[next(iter(self._verified))]  # the oldest entry
        self._verified[header] = (principal, until, jwks, generation)

    def _provider(self, payload_segment: str) -> JwtProvider:
        if len(self.providers) == 1:
            return self.providers[0]
        payload = _json_segment(payload_segment)
        if payload is None:
            raise self._fail("jwt.malformed", "payload is not a base64url JSON object")
        issuer = payload.get("iss")
        provider = self.by_issuer.get(issuer) if isinstance(issuer, str) else None
        if provider is None:
            raise self._fail("jwt.bad_issuer", f"no provider for issuer {str(issuer)[:100]!r}")
        return provider

    def _decode(self, token: str, key: JwtKey, alg: str, provider: JwtProvider) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = self._decoder.decode(
                token,
                key,
                algorithms=[alg],
                audience=list(provider.audiences) or None,
                issuer=provider.issuer,
                leeway=provider.leeway,
                options={"require": list(provider.required_claims), "verify_aud": bool(provider.audiences)},
            )
        except ExpiredSignatureError:
            raise self._fail("jwt.expired", f"token of {provider.issuer} expired") from None
        except ImmatureSignatureError:
            raise self._fail("jwt.not_yet_valid", f"token of {provider.issuer} not yet valid") from None
        except InvalidAudienceError:
            raise self._fail("jwt.bad_audience", f"token of {provider.issuer}: audience not accepted") from None
        except InvalidIssuerError:
            raise self._fail("jwt.bad_issuer", "issuer claim does not match the provider") from None
        except MissingRequiredClaimError as exc:
            raise self._fail("jwt.missing_claim", f"token of {provider.issuer} lacks {exc.claim!r}") from None
        except InvalidAlgorithmError:
            raise self._fail("jwt.alg_not_allowed", f"alg {alg!r} refused by the decoder") from None
        except (InvalidSignatureError, InvalidKeyError):
            raise self._fail("jwt.bad_signature", f"signature does not verify for {provider.issuer}") from None
        except (DecodeError, InvalidIssuedAtError):
            raise self._fail("jwt.malformed", "token does not decode") from None
        except PyJWTError as exc:
            raise self._fail("jwt.malformed", f"token refused: {exc.__class__.__name__}") from None
        return claims


def _json_segment(segment: str) -> dict[str, Any] | None:
    """Decode one base64url JSON object segment, or ``None``."""
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _key_fits(key: JwtKey, alg: str) -> bool:
    """Whether a key of this type can verify ``alg`` (an RSA key never verifies HS256, and so on)."""
    if alg in HMAC_ALGORITHMS:
        return isinstance(key, bytes)
    if alg.startswith(("RS", "PS")):
        return isinstance(key, rsa.RSAPublicKey)
    if alg in _EC_CURVES:
        return isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == _EC_CURVES[alg]
    if alg == "EdDSA":
        return isinstance(key, ed25519.Ed25519PublicKey)
    return False


def _principal(claims: dict[str, Any], provider: JwtProvider) -> Principal:
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise AuthError(
            "jwt.missing_claim",
            log_detail=f"token of {provider.issuer} has no usable 'sub'",
            www_authenticate=bearer_error_challenge(),
        )
    tenant: str | None = None
    if provider.tenant_claim is not None:
        value = claims.get(provider.tenant_claim)
        if isinstance(value, str | int) and not isinstance(value, bool):
            tenant = str(value)
    scopes: set[str] = set()
    scope = claims.get("scope")
    if isinstance(scope, str):
        scopes.update(scope.split())
    scp = claims.get("scp")
    if isinstance(scp, str):
        scopes.update(scp.split())
    elif isinstance(scp, list):
        scopes.update(item for item in scp if isinstance(item, str))
    exp = claims.get("exp")
    jti = claims.get("jti")
    return Principal(
        subject=subject,
        method=AuthMethod.JWT,
        credential_kind=CredentialKind.JWT,
        credential_id=jti if isinstance(jti, str) else "",
        tenant=tenant,
        scopes=frozenset(scopes),
        expires_at=float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None,
    )
