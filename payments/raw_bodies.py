"""Show a stored callback body to staff, readable and exactly as the gateway sent it."""

from __future__ import annotations

import json
import uuid


class _NotFaithful(ValueError):
    """The body would read differently once pretty-printed."""


def _refuse_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # A dict keeps one of two equal keys: the page would hide what was signed.
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _NotFaithful
    return obj


def pretty_body(raw: str) -> str:
    """
    Return ``raw`` indented when it is JSON, else ``raw`` unchanged.

    Numbers keep the digits the gateway sent (``25.10`` is not shown as
    ``25.1``); a body that cannot be shown faithfully (duplicate keys,
    nesting too deep to walk) is returned as stored.
    """
    marker = uuid.uuid4().hex
    numbers: list[str] = []

    def keep(text: str) -> str:
        numbers.append(text)
        return f"{marker}{len(numbers) - 1}"

    try:
        parsed = json.loads(
            raw,
            parse_float=keep,
            parse_int=keep,
            parse_constant=keep,
            object_pairs_hook=_refuse_duplicates,
        )
        text = json.dumps(parsed, indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        return raw
    # Each number went through as a quoted marker: put its own text back.
    for index, number in enumerate(numbers):
        text = text.replace(f'"{marker}{index}"', number)
    return text
