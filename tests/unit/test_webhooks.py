"""Webhook pure parts: signatures (checked against the reference implementation), back-off, addresses."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook

from backend.adapters.webhook_http import pinned_url
from backend.domain.webhooks import backoff_s, new_secret, refused_address, sign


def test_signature_verifies_with_the_reference_implementation() -> None:
    secret = new_secret()
    timestamp = int(datetime.now(UTC).timestamp())
    body = '{"type":"job.completed","data":{"name":"é"}}'.encode()
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign([secret], "msg_1", timestamp, body),
    }
    assert Webhook(secret).verify(body, headers)["type"] == "job.completed"


def test_backoff_steps_then_repeats_the_last() -> None:
    steps = [5.0, 30.0, 120.0]
    assert [backoff_s(n, steps) for n in (1, 2, 3, 4, 10)] == [5, 30, 120, 120, 120]


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "192.168.0.1",
        "172.16.0.1",
        "169.254.169.254",
        "::1",
        "fe80::1%eth0",
        "::ffff:127.0.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "100.64.0.1",
        "fc00::1",
        "240.0.0.1",
    ],
)
def test_private_addresses_are_refused(address: str) -> None:
    assert refused_address(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert not refused_address(address)


def test_pinned_url_keeps_host_header_and_path() -> None:
    assert pinned_url("https://hooks.example.com:8443/a?b=1", "93.184.216.34") == (
        "https://93.184.216.34:8443/a?b=1",
        "hooks.example.com:8443",
        "hooks.example.com",
    )
    assert pinned_url("https://example.com/x", "2001:db8::1")[0] == "https://[2001:db8::1]/x"
