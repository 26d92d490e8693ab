"""The Idempotency-Key request header (IETF draft): bare or a quoted structured-field string."""

from __future__ import annotations

from collections.abc import Sequence

from backend.domain.errors import IdempotencyKeyInvalid

MAX_KEY_LENGTH = 255
# The header values `parse_idempotency_key` accepts, for the OpenAPI schema: bare (printable ASCII, not
# opening with a quote) or an sf-string (`"` ... `"` with `\"` and `\\` escapes), 1-255 characters of key.
HEADER_PATTERN = r'^(?:[!#-~](?:[ -~]{0,253}[!-~])?|"(?:[ !#-\[\]-~]|\\["\\]){1,255}")$'
HEADER_MAX_LENGTH = 2 * MAX_KEY_LENGTH + 2


def _printable(text: str) -> bool:
    return all(0x20 <= ord(ch) <= 0x7E for ch in text)


def _unquote_sf_string(value: str) -> str:
    """Decode an RFC 8941 sf-string (`"..."` with `\\"` and `\\\\` escapes)."""
    inner, out, i = value[1:-1], [], 0
    while i < len(inner):
        ch = inner[i]
        if ch == "\\":
            if i + 1 >= len(inner) or inner[i + 1] not in '"\\':
                raise IdempotencyKeyInvalid()
            out.append(inner[i + 1])
            i += 2
            continue
        if ch == '"':
            raise IdempotencyKeyInvalid()
        out.append(ch)
        i += 1
    return "".join(out)


def parse_idempotency_key(header: str) -> str:
    """The key a header value names: bare or a quoted structured-field string map to the same key.

    A value that opens with a double quote is an sf-string and must be a well-formed one: `"abc` is
    a malformed header, not the bare key `"abc`.
    """
    value = header.strip()
    if not _printable(value):
        raise IdempotencyKeyInvalid()
    if value.startswith('"'):
        if len(value) < 2 or not value.endswith('"'):
            raise IdempotencyKeyInvalid()
        value = _unquote_sf_string(value)
    if not 1 <= len(value) <= MAX_KEY_LENGTH:
        raise IdempotencyKeyInvalid()
    return value


def parse_idempotency_header(lines: Sequence[str]) -> str:
    """The key named by a request's Idempotency-Key field lines; two lines are ambiguous, so 400."""
    if len(lines) != 1:
        raise IdempotencyKeyInvalid("Idempotency-Key must be sent exactly once")
    return parse_idempotency_key(lines[0])
