"""Idempotency-Key parsing and request fingerprints (pure logic)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.api.idempotency import (
    HEADER_MAX_LENGTH,
    HEADER_PATTERN,
    MAX_KEY_LENGTH,
    parse_idempotency_header,
    parse_idempotency_key,
)
from backend.domain.errors import IdempotencyKeyInvalid
from backend.services.idempotency import canonical_json, fingerprint


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ("order-42", "order-42"),
        ('"order-42"', "order-42"),
        ("  order-42  ", "order-42"),
        ("a b", "a b"),
        ("8e0f1c2a-7b3d-4c5e-9f60-a1b2c3d4e5f6", "8e0f1c2a-7b3d-4c5e-9f60-a1b2c3d4e5f6"),
        (r'"say \"hi\""', 'say "hi"'),
        (r'"back\\slash"', "back\\slash"),
        ("x", "x"),
        ("~!#$%&'()*+,-./:;<=>?@[]^_`{|}", "~!#$%&'()*+,-./:;<=>?@[]^_`{|}"),
    ],
)
def test_valid_keys(header: str, key: str) -> None:
    assert parse_idempotency_key(header) == key


def test_bare_and_quoted_name_the_same_key() -> None:
    assert parse_idempotency_key("abc-123") == parse_idempotency_key('"abc-123"')


def test_length_limits_apply_to_the_key_not_the_quotes() -> None:
    longest = "k" * MAX_KEY_LENGTH
    assert parse_idempotency_key(longest) == longest
    assert parse_idempotency_key(f'"{longest}"') == longest
    with pytest.raises(IdempotencyKeyInvalid):
        parse_idempotency_key(longest + "k")
    with pytest.raises(IdempotencyKeyInvalid):
        parse_idempotency_key(f'"{longest}k"')


@pytest.mark.parametrize(
    "header",
    [
        "",
        "   ",
        '""',
        '"',
        "clé",
        "key\x00",
        "tab\there",
        "line\nbreak",
        "del\x7f",
        '"unterminated',
        '"inner"quote"',
        r'"bad \n escape"',
        '"trailing backslash\\"',
    ],
)
def test_invalid_keys(header: str) -> None:
    with pytest.raises(IdempotencyKeyInvalid):
        parse_idempotency_key(header)


def test_the_header_must_be_sent_exactly_once() -> None:
    assert parse_idempotency_header(['"k"']) == "k"
    for lines in ([], ["a", "b"], ["k", "k"]):
        with pytest.raises(IdempotencyKeyInvalid):
            parse_idempotency_header(lines)


def test_canonical_json_ignores_key_order_and_whitespace() -> None:
    one = {"type": "square_sum", "payload": {"data": [1, 2, 3]}, "name": None}
    two = {"name": None, "payload": {"data": [1, 2, 3]}, "type": "square_sum"}
    assert (
        canonical_json(one)
        == canonical_json(two)
        == ('{"name":null,"payload":{"data":[1,2,3]},"type":"square_sum"}')
    )


def test_canonical_json_keeps_meaningful_differences() -> None:
    assert canonical_json({"data": [1, 2]}) != canonical_json({"data": [2, 1]})
    assert canonical_json({"a": "x"}) != canonical_json({"a": "x "})


def test_fingerprint_covers_method_path_and_body() -> None:
    body = {"type": "sleep", "payload": {"seconds": 0}}
    base = fingerprint("POST", "/jobs", body)
    assert len(base) == 64
    assert fingerprint("post", "/jobs", dict(reversed(list(body.items())))) == base
    assert fingerprint("PUT", "/jobs", body) != base
    assert fingerprint("POST", "/jobs/x", body) != base
    assert fingerprint("POST", "/jobs", {**body, "name": "n"}) != base
    assert fingerprint("POST", "/jobs", None) != base


@settings(max_examples=300, deadline=None)
@given(st.from_regex(HEADER_PATTERN, fullmatch=True))
def test_every_value_the_documented_pattern_allows_is_a_key(header: str) -> None:
    assert len(header) <= HEADER_MAX_LENGTH
    assert 1 <= len(parse_idempotency_key(header)) <= MAX_KEY_LENGTH


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=260))
def test_every_key_the_parser_accepts_fits_the_documented_pattern(header: str) -> None:
    try:
        parse_idempotency_key(header)
    except IdempotencyKeyInvalid:
        return
    assert re.fullmatch(HEADER_PATTERN, header.strip())
