"""A stored callback body as staff read it on the event page."""

import pytest

from payments.raw_bodies import pretty_body


def test_json_is_indented():
    assert pretty_body('{"id":"evt_1","data":{"ok":true,"n":null}}') == (
        '{\n  "id": "evt_1",\n  "data": {\n    "ok": true,\n    "n": null\n  }\n}'
    )


def test_numbers_keep_the_digits_the_gateway_sent():
    raw = '{"amount": 25.10, "big": 123456789012345678901234567890, "tiny": 1E-400, "n": 10}'

    assert pretty_body(raw) == (
        '{\n  "amount": 25.10,\n  "big": 123456789012345678901234567890,\n'
        '  "tiny": 1E-400,\n  "n": 10\n}'
    )


def test_text_is_shown_as_text():
    assert pretty_body('["caf\\u00e9"]') == '[\n  "café"\n]'


@pytest.mark.parametrize(
    "raw",
    [
        "id=1&type=payment.captured",
        '{"amount": "1.00", "amount": "900.00"}',
        "[" * 100_000 + "]" * 100_000,
        "",
        '{"id": "evt_1"',
    ],
    ids=["form-encoded", "duplicate-keys", "deep-nesting", "empty", "truncated"],
)
def test_a_body_that_cannot_be_shown_faithfully_is_shown_as_stored(raw):
    assert pretty_body(raw) == raw
