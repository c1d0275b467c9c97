"""Small parsers shared by the management commands."""

from __future__ import annotations

import csv
import itertools
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import TextIO

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


def usage_error(message: str) -> CommandError:
    """Return the CommandError of a usage mistake: exit status 2, as argparse's own."""
    return CommandError(message, returncode=2)


def open_numbers(path: str, *, column: str = "number") -> Iterator[str]:
    """
    Open a file of order numbers and return an iterator over them, read lazily.

    The file holds one number a line, or is a CSV whose header names a
    ``column`` column (a file whose name ends in ``.csv``, or whose first
    line holds a comma). Blank lines and cells, and the spaces around a
    number, are skipped. Raise a usage error, before anything is read past
    the header, for a file that cannot be opened or a CSV without the column.
    """
    try:
        handle = open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115 (closed by the reader)
    except OSError as exc:
        raise usage_error(f"Cannot read {path}: {exc.strerror or exc}.") from None
    try:
        first = ""
        for line in handle:
            if line.strip():
                first = line
                break
        is_csv = path.lower().endswith(".csv") or "," in first
        if not is_csv and first.strip().lower() == column:
            is_csv = True  # a one-column CSV
        if not is_csv:
            return _plain_numbers(handle, first)
        header = [name.strip().lower() for name in next(csv.reader([first]), [])]
        if column not in header:
            raise usage_error(
                f"{path} is a CSV file without a {column!r} column "
                f"(its columns: {', '.join(header) or 'none'}); name the column of order "
                f"numbers {column!r} in the first line."
            )
        return _csv_numbers(handle, header.index(column))
    except BaseException:
        handle.close()
        raise


def _plain_numbers(handle: TextIO, first: str) -> Iterator[str]:
    with handle:
        for line in itertools.chain([first], handle):
            number = line.strip()
            if number:
                yield number


def _csv_numbers(handle: TextIO, index: int) -> Iterator[str]:
    with handle:
        for row in csv.reader(handle):
            number = row[index].strip() if index < len(row) else ""
            if number:
                yield number
