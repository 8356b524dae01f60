"""Token formats: sk_/ak_ with a CRC32 checksum, legacy sk_ + hex; refused without a store lookup."""

from __future__ import annotations

import hashlib
import secrets
import zlib

import pytest

from gateway.credentials import (
    MalformedCredential,
    TokenFormat,
    TokenKind,
    generate_api_key,
    generate_service_token,
    hash_token,
    looks_valid,
    parse_token,
)
from gateway.credentials.tokens import BASE62, base62_encode, checksum

SERVICE = generate_service_token()
API_KEY = generate_api_key()
LEGACY = "sk_" + secrets.token_hex(32)


def _swap(text: str, index: int) -> str:
    replacement = BASE62[(BASE62.index(text[index]) + 1) % 62]
    return text[:index] + replacement + text[index + 1 :]


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        (SERVICE, None, (TokenKind.SERVICE_TOKEN, TokenFormat.CHECKSUMMED)),
        (SERVICE, TokenKind.SERVICE_TOKEN, (TokenKind.SERVICE_TOKEN, TokenFormat.CHECKSUMMED)),
        (API_KEY, TokenKind.API_KEY, (TokenKind.API_KEY, TokenFormat.CHECKSUMMED)),
        (LEGACY, TokenKind.SERVICE_TOKEN, (TokenKind.SERVICE_TOKEN, TokenFormat.LEGACY_HEX)),
    ],
    ids=["service-token", "service-token-as-service-token", "api-key", "legacy-hex"],
)
def test_valid(text: str, kind: TokenKind | None, expected: tuple[TokenKind, TokenFormat]) -> None:
    parsed = parse_token(text, kind)
    assert (parsed.kind, parsed.format) == expected
    assert parsed.hash == hashlib.sha256(text.encode()).hexdigest() == hash_token(text)
    assert looks_valid(text, kind)
    assert text not in repr(parsed)


@pytest.mark.parametrize(
    ("text", "kind", "reason"),
    [
        (_swap(SERVICE, 10), None, "checksum mismatch"),
        (_swap(SERVICE, len(SERVICE) - 1), None, "checksum mismatch"),
        (SERVICE[:10] + SERVICE[11] + SERVICE[10] + SERVICE[12:], None, "checksum mismatch"),
        ("gh" + SERVICE[2:], None, "unknown prefix"),
        ("ak_" + SERVICE[3:], None, "checksum mismatch"),
        (API_KEY, TokenKind.SERVICE_TOKEN, "not a service token"),
        (SERVICE, TokenKind.API_KEY, "not an API key"),
        (SERVICE[:-1], None, "wrong length"),
        (SERVICE + "A", None, "wrong length"),
        (SERVICE[:20] + "-" + SERVICE[21:], None, "unexpected character"),
        (SERVICE[:20] + "é" + SERVICE[21:], None, "unexpected character"),
        ("", None, "unknown prefix"),
        ("sk_", None, "wrong length"),
        ("Bearer " + SERVICE, None, "unknown prefix"),
        (LEGACY.upper().replace("SK_", "sk_"), None, "wrong length"),
        ("ak_" + LEGACY[3:], None, "wrong length"),
        (LEGACY[:-1] + "g", None, "wrong length"),
    ],
    ids=[
        "mistyped-char",
        "wrong-checksum",
        "transposed-chars",
        "wrong-prefix",
        "prefix-swapped-to-api-key",
        "api-key-where-service-token-expected",
        "service-token-where-api-key-expected",
        "truncated",
        "one-char-too-many",
        "non-base62-char",
        "non-ascii-char",
        "empty",
        "prefix-only",
        "with-scheme",
        "legacy-uppercase-hex",
        "legacy-hex-as-api-key",
        "legacy-non-hex",
    ],
)
def test_malformed(text: str, kind: TokenKind | None, reason: str) -> None:
    with pytest.raises(MalformedCredential) as caught:
        parse_token(text, kind)
    assert reason in caught.value.detail
    assert caught.value.status == 401 and caught.value.code == "credential.malformed"
    assert not looks_valid(text, kind)
    if len(text) > 8:
        assert text[3:] not in caught.value.detail  # never echoes the credential


def test_legacy_tokens_can_be_refused() -> None:
    with pytest.raises(MalformedCredential, match="legacy"):
        parse_token(LEGACY, allow_legacy=False)
    assert looks_valid(SERVICE, allow_legacy=False)


def test_every_single_character_error_is_caught() -> None:
    token = generate_service_token()
    for index in range(3, len(token)):
        for replacement in BASE62:
            if replacement != token[index]:
                assert not looks_valid(token[:index] + replacement + token[index + 1 :])


def test_generated_tokens_have_256_random_bits_and_are_unique() -> None:
    tokens = {generate_service_token() for _ in range(1000)}
    assert len(tokens) == 1000
    for token in tokens:
        assert len(token) == 3 + 43 + 6 and looks_valid(token, TokenKind.SERVICE_TOKEN)
    # 43 base62 characters hold 43 * log2(62) = 256.03 bits.
    assert 62**43 >= 2**256
    # Every position takes many values: the randomness is spread over the whole body.
    for position in range(3, 46):
        assert len({token[position] for token in tokens}) > 40


def test_checksum_is_six_base62_characters_of_crc32() -> None:
    assert checksum("sk_", "abc") == base62_encode(zlib.crc32(b"sk_abc"), 6)
    assert base62_encode(0, 6) == "000000"
    assert len(checksum("sk_", "x" * 43)) == 6
    assert base62_encode(2**32 - 1, 6) == "4gfFC3"
    with pytest.raises(ValueError, match="does not fit"):
        base62_encode(62**6, 6)
    with pytest.raises(ValueError):
        base62_encode(-1, 6)


def test_hint_shows_only_a_few_characters() -> None:
    parsed = parse_token(SERVICE)
    assert parsed.hint == f"{SERVICE[:7]}…{SERVICE[-4:]}"
