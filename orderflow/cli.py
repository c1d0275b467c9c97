"""Small parsers shared by the management commands."""

from __future__ import annotations

import re
from datetime import timedelta

from django.core.management.base import CommandError

_AGE = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    """Parse "30m", "12h", "7d" or "2w" into a timedelta, or raise CommandError."""
    match = _AGE.match(text or "")
    if not match:
        raise CommandError(
            f"{text!r} is not an age: use a number and a unit, e.g. 30m, 12h, 7d or 2w."
        )
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
