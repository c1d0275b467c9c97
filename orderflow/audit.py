"""
Who, why and through which channel: the audit context.

Every history record (django-simple-history) takes its user, reason and
channel from one place: the context entered with :func:`audit_context`. The
interfaces enter it once (the admin middleware, the callback view, a
management command), services narrow it (an override adds its reason), and
a ``pre_create_historical_record`` receiver copies it onto the record. The
context is a ``ContextVar``, reset on exit, so nothing leaks from one save,
request or thread into the next.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any

from django.db import models
from django.dispatch import receiver
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from simple_history.signals import pre_create_historical_record


class Channel(models.TextChoices):
    """Where a change came from."""

    ADMIN = "admin", _("Admin")
    """A staff user in the Django admin."""
    GATEWAY = "gateway", _("Gateway")
    """A payment gateway's callback."""
    COMMAND = "command", _("Command")
    """An operator's management command."""
    STOREFRONT = "storefront", _("Storefront")
    """The storefront, through the Python service API."""
    SYSTEM = "system", _("System")
    """Anything else: scheduled jobs, data migrations, the shell."""


_UNSET: Any = object()


@dataclass(frozen=True)
class AuditState:
    channel: str | None = None
    user: Any = None
    reason: str = ""


# AuditState is frozen, so sharing the default instance is safe.
_state: ContextVar[AuditState] = ContextVar(
    "orderflow_audit",
    default=AuditState(),  # noqa: B039
)


def current_audit() -> AuditState:
    """Return the audit context in force (empty outside any context)."""
    return _state.get()


@contextmanager
def audit_context(
    *, channel: str | None = None, user: Any = _UNSET, reason: str | None = None
) -> Iterator[AuditState]:
    """
    Enter an audit context; values not given are inherited from the outer one.

    ``user=None`` states explicitly that no user is acting (a gateway, a
    command run without ``--user``).
    """
    outer = _state.get()
    changes: dict[str, Any] = {}
    if channel is not None:
        changes["channel"] = Channel(channel).value
    if user is not _UNSET:
        changes["user"] = user if (user is None or user.is_authenticated) else None
    if reason is not None:
        changes["reason"] = reason
    token = _state.set(replace(outer, **changes))
    try:
        yield _state.get()
    finally:
        _state.reset(token)


def channel_or(default: str) -> str:
    """Return the channel in force, or ``default`` when none was entered."""
    return current_audit().channel or default


class AuditedHistoricalModel(models.Model):
    """Abstract base of every history table: adds the channel column."""

    channel = models.CharField(
        _("channel"), max_length=20, choices=Channel.choices, default=Channel.SYSTEM
    )

    class Meta:
        abstract = True


@receiver(pre_create_historical_record)
def fill_history_from_audit_context(sender, history_instance, **kwargs) -> None:
    state = _state.get()
    if state.user is not None:
        history_instance.history_user = state.user
    if state.reason:
        history_instance.history_change_reason = state.reason
    if hasattr(history_instance, "channel"):
        history_instance.channel = state.channel or Channel.SYSTEM


class AdminAuditMiddleware:
    """Run every admin request inside an ``admin`` audit context for its user."""

    def __init__(self, get_response):
        self.get_response = get_response
        self._prefix: str | None = None

    def __call__(self, request):
        if self._prefix is None:
            self._prefix = reverse("admin:index")
        if not request.path.startswith(self._prefix):
            return self.get_response(request)
        user = getattr(request, "user", None)
        acting = user if user is not None and user.is_authenticated else None
        with audit_context(channel=Channel.ADMIN, user=acting):
            return self.get_response(request)
