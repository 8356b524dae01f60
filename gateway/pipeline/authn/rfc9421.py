"""HTTP Message Signatures (RFC 9421) from services: ``Signature-Input`` + ``Signature``.

A service signs the request with one of its keys (``keyid``): ``hmac-sha256``
with the shared secret, or ``ed25519`` with a private key whose public half is
registered. The key decides the algorithm; a signature's ``alg`` parameter,
when present, must agree with it (never the other way round).

Checks, cheapest first, each with its own reason code::

    parse both fields (RFC 8941)          httpsig.malformed
    created present                       httpsig.created_missing
    created not in the future (+ skew)    httpsig.skew
    expires / created + max_age passed    httpsig.expired
    required components covered           httpsig.components_missing, httpsig.digest_missing
    nonce present (if required)           httpsig.nonce_missing
    keyid names an active key             httpsig.unknown_key      (client reads invalid_signature)
    alg agrees with the key               httpsig.alg_mismatch     (client reads invalid_signature)
    signature verifies                    httpsig.bad_signature    (client reads invalid_signature)
    body within max_body                  httpsig.body_too_large   (413)
    Content-Digest matches the body       httpsig.digest_mismatch
    nonce not seen before (per key)       httpsig.replay

The body is read only after the signature over the headers verified, so an
unauthenticated client cannot make the gateway buffer anything.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, NamedTuple

import http_sf
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from multidict import istr

from gateway.bodies import DEFAULT_BODY_TIMEOUT
from gateway.pipeline.authn.derived import ServiceKeyUses, current_key_use
from gateway.pipeline.authn.signature_base import (
    ComponentId,
    Coverage,
    DigestMismatch,
    SfItem,
    SignatureBaseError,
    component_identity,
    parse_component_ids,
    serialize_parameters,
    verify_content_digest,
)
from gateway.pipeline.base import AuthError, AuthMethod, Principal, RequestView
from gateway.pipeline.sources import (
    KeyAlgorithm,
    NonceStore,
    PeekableServiceKeySource,
    ServiceKeySource,
    VerificationKey,
)

DEFAULT_REQUIRED_COMPONENTS: Final = ("@method", "@authority", "@path", "@query")
DEFAULT_MAX_AGE: Final = 300.0
DEFAULT_CLOCK_SKEW: Final = 30.0
DEFAULT_MAX_BODY: Final = 1024 * 1024
MAX_FIELD_BYTES: Final = 8192
MAX_NONCE_LENGTH: Final = 256

_CHALLENGE: Final = 'Signature realm="gateway"'
_PARAMETER_TYPES: Final[dict[str, type]] = {
    "alg": str,
    "created": int,
    "expires": int,
    "keyid": str,
    "nonce": str,
    "tag": str,
}

# The shape nearly every signer sends: one signature, plain component names, and only the
# parameters this verifier knows, each once and of its type (Integers without leading zeros,
# Strings without escapes, ';' or more than MAX_NONCE_LENGTH characters). It is taken apart
# with regular expressions instead of the general RFC 8941 parser (~60 µs for the two fields),
# and what the general path would check of it holds by construction: known parameters of the
# right type, a nonce not too long, no component twice. Anything else (and a missing keyid,
# a Signature for another label) goes through http_sf and the general checks, which name the
# problem. What this path accepts, http_sf parses to the same values (property tests).
#
# The text before the Inner List's ')' (label and component names) repeats from request to
# request: the authenticator checks it once per distinct text (a _Shape). The parameters
# change with ``created``: matched per request.
_HEAD = re.compile(r'([a-z*][a-z0-9_.*-]*)=\(((?:"[a-z0-9@_.-]+"(?: "[a-z0-9@_.-]+")*)?)')
_PARAMETER = re.compile(
    r";(?:(created|expires)=(0|-?[1-9][0-9]{0,14})"
    rf'|(alg|keyid|nonce|tag)="([ !#-:<-\[\]-~]{{0,{MAX_NONCE_LENGTH}}})")(?=;|\Z)'
)
# Header names as istr: a case-insensitive lookup with an istr key skips folding the name each time.
SIGNATURE_INPUT: Final = istr("Signature-Input")
SIGNATURE: Final = istr("Signature")
MAX_SHAPES: Final = 1024  # distinct label + component lists remembered (clients sign alike)
MAX_INPUT_TEXTS: Final = 1024  # Signature-Input texts remembered (one per key and second, without a nonce)


def common_head(head: str) -> tuple[str, tuple[str, ...]] | None:
    """The label and component names of a Signature-Input's text before its ``)`` in the common
    shape (``sig=("@method" "@path"``), or ``None``: not that shape, or a component named twice."""
    match = _HEAD.fullmatch(head)
    if match is None:
        return None
    label, names = match.groups()
    components = tuple(name[1:-1] for name in names.split(" ")) if names else ()
    if len(set(components)) != len(components):
        return None
    return label, components


def common_parameters(text: str) -> dict[str, Any] | None:
    """The parameters after a Signature-Input's Inner List (``;created=1;keyid="k"``) in the common
    shape, in their order, or ``None``. Their text is then their serialization (RFC 8941 §4.1)."""
    found = _PARAMETER.findall(text)
    # A match starts at a ';' and ends just before the next one or at the end (no String here
    # holds a ';'): as many matches as ';', the first at the start, cover the whole text.
    if len(found) != text.count(";") or text[:1] not in ("", ";"):
        return None
    params: dict[str, Any] = {}
    for int_name, integer, str_name, string in found:
        if int_name:
            params[int_name] = int(integer)
        else:
            params[str_name] = string
    if len(params) != len(found):
        return None  # a duplicate: RFC 8941 lets the last one win; the general path refuses it
    return params


def common_signature(signature: str, prefix: str) -> bytes | None:
    """The bytes of a Signature field that is exactly one member, ``prefix`` (``label=:``) then
    Base64 then ``:``, or ``None``."""
    if len(signature) <= len(prefix) or signature[-1] != ":" or not signature.startswith(prefix):
        return None
    try:
        # base64.b64decode(..., validate=True) without its two Python calls: the Base64 alphabet and
        # padding only (a non-ASCII str raises ValueError, as b64decode's encode("ascii") does)
        return binascii.a2b_base64(signature[len(prefix) : -1], strict_mode=True)
    except ValueError:  # binascii.Error is one
        return None


def fast_parse(signature_input: str, signature: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Both fields as ``http_sf.parse(..., tltype="dictionary")`` would return them when they are in
    the common shape, or ``None`` (use http_sf). For tests: the authenticator takes the same steps."""
    head, sep, params_text = signature_input.partition(")")
    shape = common_head(head) if sep else None
    params = common_parameters(params_text) if shape is not None else None
    if shape is None or params is None:
        return None
    label, components = shape
    value = common_signature(signature, f"{label}=:")
    if value is None:
        return None
    return {label: ([(name, {}) for name in components], params)}, {label: (value, {})}


class _Shape(NamedTuple):
    """What the text before a common-shape Signature-Input's ``)`` decides, for one authenticator."""

    label: str
    coverage: Coverage
    covered: bool  # the required components are all covered
    signature_prefix: str  # how the Signature field starts: ``label=:``


class _Parameters(NamedTuple):
    """A signature's parameters and what the checks read of them, derived once per parameter text."""

    values: dict[str, Any]  # as parsed (read only)
    text: str  # their serialization, the end of the signature base
    keyid: str
    created: int | None
    not_before: float  # created - clock_skew: before it, the signature is from the future
    valid_until: float  # until when (Unix seconds) the signature stays acceptable: max_age, expires, skew
    nonce: str | None
    alg: str | None


def _reject_duplicate(key: str, context: str) -> None:
    # RFC 8941 lets the last duplicate win; for signatures that ambiguity is an attack surface.
    raise ValueError(f"duplicate {context} key {key!r}")


class HttpSignatureAuthenticator:
    """Verifies an RFC 9421 request signature made with a registered service key.

    ``required_components`` must all be covered (default ``@method``,
    ``@authority``, ``@path``, ``@query``); with ``require_digest_with_body`` a
    request with a body must also cover ``content-digest``. ``max_age`` bounds
    the age of ``created``, ``clock_skew`` tolerates clocks in both directions.
    ``tag``, when set, selects the signature with that ``tag`` parameter
    (others are not this gateway's). A ``nonce`` is accepted once per key while
    the signature would stay valid; ``require_nonce`` makes it mandatory.
    """

    name: Final = AuthMethod.HTTP_SIGNATURE
    challenge: Final = _CHALLENGE

    def __init__(
        self,
        keys: ServiceKeySource,
        *,
        required_components: Sequence[str] = DEFAULT_REQUIRED_COMPONENTS,
        require_digest_with_body: bool = True,
        max_age: float = DEFAULT_MAX_AGE,
        clock_skew: float = DEFAULT_CLOCK_SKEW,
        max_body: int = DEFAULT_MAX_BODY,
        nonces: NonceStore | None = None,
        require_nonce: bool = False,
        tag: str | None = None,
        body_timeout: float = DEFAULT_BODY_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_age <= 0 or clock_skew < 0 or max_body < 0:
            raise ValueError("max_age must be positive, clock_skew and max_body not negative")
        if require_nonce and nonces is None:
            raise ValueError("require_nonce needs a nonce store")
        self.keys = keys
        # The store adapter answers cached keys without a coroutine; other sources are awaited.
        self._peek = keys.peek_key_by_id if isinstance(keys, PeekableServiceKeySource) else None
        self.required = frozenset(parse_component_ids(required_components))
        self.require_digest_with_body = require_digest_with_body
        self.max_age = max_age
        self.clock_skew = clock_skew
        self.max_body = max_body
        self.body_timeout = body_timeout  # the longest pause while the body is buffered (408 after)
        self.nonces = nonces
        self.require_nonce = require_nonce
        self.tag = tag
        self.clock = clock
        self._public_keys: dict[bytes, Ed25519PublicKey] = {}
        self._shapes: dict[str, _Shape] = {}  # by the text before a common-shape Signature-Input's ')'
        self._inputs: dict[str, tuple[_Shape, _Parameters]] = {}  # by the whole common-shape Signature-Input
        self._uses = ServiceKeyUses(AuthMethod.HTTP_SIGNATURE)

    def _fail(self, reason: str, log_detail: str) -> AuthError:
        return AuthError(reason, log_detail=log_detail, www_authenticate=_CHALLENGE)

    async def authenticate(self, request: RequestView) -> Principal | None:
        req = request.request  # RequestView's properties are Python calls: read the request itself
        headers = req.headers
        inputs = headers.getall(SIGNATURE_INPUT, ())
        signatures = headers.getall(SIGNATURE, ())
        if not inputs or not signatures:
            if not inputs and not signatures:
                return None
            raise self._fail("httpsig.malformed", "Signature-Input and Signature must come together")
        selected = self._select(inputs, signatures)
        if selected is None:
            return None  # signatures for someone else (another tag)
        label, coverage, covered, params, signature = selected
        keyid = params.keyid

        # created / expires: until when this signature stays acceptable was derived with its parameters.
        now = self.clock()
        created = params.created
        if created is None:
            raise self._fail("httpsig.created_missing", f"signature {label!r} has no created")
        if now < params.not_before:
            raise self._fail("httpsig.skew", f"signature {label!r} created {created - now:.0f}s in the future")
        valid_until = params.valid_until
        if now > valid_until:
            raise self._fail("httpsig.expired", f"signature {label!r} created {now - created:.0f}s ago")
        # required components (decided once per list of components), Content-Digest with a body
        if not covered:
            names = ", ".join(sorted(name for name, _ in self.required - coverage.identities))
            raise self._fail("httpsig.components_missing", f"signature {label!r} does not cover {names}")
        if self.require_digest_with_body and not coverage.digest and req.body_exists:
            raise self._fail("httpsig.digest_missing", f"signature {label!r}: body present, content-digest not covered")
        nonce = params.nonce
        if nonce is None and self.require_nonce:
            raise self._fail("httpsig.nonce_missing", f"signature {label!r} has no nonce")

        peeked = self._peek(keyid) if self._peek is not None else None
        key = peeked[0] if peeked is not None else await self.keys.key_by_id(keyid)
        if key is None or (key.expires_at is not None and key.expires_at <= now):
            raise self._fail("httpsig.unknown_key", f"no active key {keyid!r}")
        if params.alg is not None and params.alg != key.algorithm:
            raise self._fail("httpsig.alg_mismatch", f"alg {params.alg!r} but key {keyid!r} is {key.algorithm}")

        try:
            base = coverage.request_base(req.method, req.scheme, req.host, req.raw_path, headers, params.text)
        except SignatureBaseError as exc:
            raise self._fail("httpsig.malformed", f"signature {label!r}: {exc}") from None
        # The key's keyed HMAC and principal, found by the record's identity (no call).
        use = self._uses.by_id.get(id(key))
        if use is None or use.key is not key:
            use = self._uses.find(key)
        if use.mac is not None:  # hmac-sha256, inline
            mac = use.mac.copy()
            mac.update(base)
            verified = hmac.compare_digest(mac.digest(), signature)
        else:
            verified = self._verify(key, base, signature)
        if not verified:
            raise self._fail("httpsig.bad_signature", f"signature {label!r} does not verify with key {keyid!r}")

        if coverage.digest:
            body = await request.read_body(self.max_body, self.body_timeout)
            try:
                verify_content_digest(", ".join(headers.getall("Content-Digest")), body)
            except DigestMismatch as exc:
                raise self._fail("httpsig.digest_mismatch", f"key {keyid!r}: {exc}") from None
            except SignatureBaseError as exc:
                raise self._fail("httpsig.malformed", f"key {keyid!r}: {exc}") from None

        if nonce is not None and self.nonces is not None:
            ttl = max(1, math.ceil(valid_until - now))
            if not await self.nonces.claim(f"httpsig:{keyid}", nonce, ttl):
                raise self._fail("httpsig.replay", f"key {keyid!r}: nonce already used")

        return use.principal

    async def recheck(self, principal: Principal) -> Principal:
        """The principal of the key that signed an open connection's upgrade, while that key stays active
        (the signature's ``created`` is long past by then: the key is what can still be revoked)."""
        use = await current_key_use(self.keys, self._uses, principal, self.clock())
        if use is None:
            raise self._fail("httpsig.unknown_key", f"key {principal.credential_id!r} no longer active")
        return use.principal

    # -- steps ---------------------------------------------------------------------------------

    def _select(
        self, inputs: list[str], signatures: list[str]
    ) -> tuple[str, Coverage, bool, _Parameters, bytes] | None:
        """Parse both fields and pick this gateway's signature: (label, coverage, whether it covers the
        required components, its parameters, signature bytes)."""
        if len(inputs) == 1 and len(signatures) == 1:
            signature_input, signature_text = inputs[0], signatures[0]
            if len(signature_input) + len(signature_text) > MAX_FIELD_BYTES:
                raise self._fail("httpsig.malformed", "signature fields too large")
            # The same text again (a key's requests within one second, without a nonce): parsed once.
            known = self._inputs.get(signature_input)
            if known is None:
                known = self._input_of(signature_input)
            if known is not None:
                shape, params = known
                signature = common_signature(signature_text, shape.signature_prefix)
                if signature is not None:
                    return shape.label, shape.coverage, shape.covered, params, signature
        input_text = ", ".join(inputs)
        signature_text = ", ".join(signatures)
        if len(input_text) + len(signature_text) > MAX_FIELD_BYTES:
            raise self._fail("httpsig.malformed", "signature fields too large")
        parsed_inputs: Any
        parsed_signatures: Any
        parsed_inputs, parsed_signatures = self._parse_fields(input_text, signature_text)
        if not isinstance(parsed_inputs, dict) or not isinstance(parsed_signatures, dict) or not parsed_inputs:
            raise self._fail("httpsig.malformed", "empty signature fields")
        for label, (member, params) in parsed_inputs.items():
            if self.tag is not None and params.get("tag") != self.tag:
                continue
            if not isinstance(member, list):
                raise self._fail("httpsig.malformed", f"Signature-Input {label!r} is not an Inner List")
            self._check_parameters(label, params)
            coverage = self._coverage(label, member)
            signature = parsed_signatures.get(label)
            if signature is None or not isinstance(signature[0], bytes):
                raise self._fail("httpsig.malformed", f"Signature has no Byte Sequence for label {label!r}")
            covered = self.required <= coverage.identities
            return label, coverage, covered, self._derive(params, serialize_parameters(params)), signature[0]
        return None

    def _input_of(self, signature_input: str) -> tuple[_Shape, _Parameters] | None:
        """A common-shape Signature-Input taken apart, when its parameters name a keyid and this gateway's
        tag; remembered (nothing changes it: it is read only); else ``None`` (the general path)."""
        head, sep, params_text = signature_input.partition(")")  # component names hold no ')'
        if not sep:
            return None
        shape = self._shapes.get(head)
        if shape is None:
            shape = self._shape(head)
            if shape is None:
                return None
        params = common_parameters(params_text)
        if params is None or "keyid" not in params or (self.tag is not None and params.get("tag") != self.tag):
            return None
        known = (shape, self._derive(params, params_text))
        if len(self._inputs) >= MAX_INPUT_TEXTS:
            self._inputs.clear()
        self._inputs[signature_input] = known
        return known

    def _derive(self, params: dict[str, Any], text: str) -> _Parameters:
        """What the checks read of checked ``params`` (keyid present, every value of its type)."""
        created: int | None = params.get("created")
        expires: int | None = params.get("expires")
        not_before = valid_until = math.inf
        if created is not None:
            not_before = created - self.clock_skew
            valid_until = created + self.max_age + self.clock_skew
            if expires is not None and expires + self.clock_skew < valid_until:
                valid_until = expires + self.clock_skew
        return _Parameters(
            params, text, params["keyid"], created, not_before, valid_until, params.get("nonce"), params.get("alg")
        )

    def _shape(self, head: str) -> _Shape | None:
        """The common-shape ``head`` (a Signature-Input up to its ')') checked, remembered; else ``None``."""
        found = common_head(head)
        if found is None:
            return None
        label, components = found
        coverage = Coverage([(name, {}) for name in components])
        shape = _Shape(label, coverage, self.required <= coverage.identities, f"{label}=:")
        if len(self._shapes) >= MAX_SHAPES:
            self._shapes.clear()
        self._shapes[head] = shape
        return shape

    def _check_parameters(self, label: str, params: dict[str, Any]) -> None:
        for name, value in params.items():
            expected = _PARAMETER_TYPES.get(name)
            if expected is None:
                raise self._fail("httpsig.malformed", f"signature {label!r}: unknown parameter {name!r}")
            if type(value) is not expected:  # bool is an int subclass: compare types exactly
                raise self._fail("httpsig.malformed", f"signature {label!r}: parameter {name!r} has the wrong type")
        if "keyid" not in params:
            raise self._fail("httpsig.malformed", f"signature {label!r} has no keyid")
        if len(params.get("nonce", "")) > MAX_NONCE_LENGTH:
            raise self._fail("httpsig.malformed", f"signature {label!r}: nonce too long")

    def _coverage(self, label: str, member: list[SfItem]) -> Coverage:
        seen: set[ComponentId] = set()
        for item in member:
            if not isinstance(item[0], str):
                raise self._fail("httpsig.malformed", f"signature {label!r}: component ids must be Strings")
            identity = component_identity(item)
            if identity in seen:
                raise self._fail("httpsig.malformed", f"signature {label!r} covers {item[0]!r} twice")
            seen.add(identity)
        return Coverage(member)

    def _parse_fields(self, input_text: str, signature_text: str) -> tuple[Any, Any]:
        try:
            parsed_inputs = http_sf.parse(
                input_text.encode("utf-8", "surrogateescape"), tltype="dictionary", on_duplicate_key=_reject_duplicate
            )
            parsed_signatures = http_sf.parse(
                signature_text.encode("utf-8", "surrogateescape"),
                tltype="dictionary",
                on_duplicate_key=_reject_duplicate,
            )
        except (ValueError, TypeError) as exc:
            raise self._fail("httpsig.malformed", f"not a Structured Field Dictionary: {exc}") from None
        return parsed_inputs, parsed_signatures

    def _verify(self, key: VerificationKey, base: bytes, signature: bytes) -> bool:
        """Verify with a key that is not hmac-sha256 (authenticate checks those itself)."""
        if key.algorithm == KeyAlgorithm.ED25519:
            public_key = self._ed25519(key)
            if public_key is None:
                raise self._fail("httpsig.unknown_key", f"key {key.key_id!r} has unusable Ed25519 material")
            try:
                public_key.verify(signature, base)
            except InvalidSignature:
                return False
            return True
        raise self._fail("httpsig.unknown_key", f"key {key.key_id!r} has unsupported algorithm {key.algorithm!r}")

    def _ed25519(self, key: VerificationKey) -> Ed25519PublicKey | None:
        """Parse a public key once and keep it: key objects are cheap to reuse, not to rebuild."""
        public_key = self._public_keys.get(key.material)
        if public_key is None:
            try:
                if len(key.material) == 32:
                    public_key = Ed25519PublicKey.from_public_bytes(key.material)
                else:
                    loaded = load_pem_public_key(key.material)
                    if not isinstance(loaded, Ed25519PublicKey):
                        return None
                    public_key = loaded
            except ValueError:
                return None
            if len(self._public_keys) >= 4096:
                self._public_keys.clear()
            self._public_keys[key.material] = public_key
        return public_key


def content_digest(body: bytes, algorithm: str = "sha-256") -> str:
    """An RFC 9530 ``Content-Digest`` field value for ``body`` (for signers and tests)."""
    digest = hashlib.sha256(body) if algorithm == "sha-256" else hashlib.sha512(body)
    return f"{algorithm}=:{base64.b64encode(digest.digest()).decode('ascii')}:"
