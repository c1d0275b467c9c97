"""
Admin URL filters never reach a secret, and never crash.

A changelist turns its query string into ORM lookups (``?kind=online``,
``?payment_method__id__exact=3``). A lookup on a secret answers yes or no
about it (``?webhook_secret__startswith=a``), which is enough to read it one
character at a time. Django's ``UserAdmin`` refuses lookups on ``password``;
``NoSecretLookupsMixin`` refuses any lookup whose path touches a secret,
directly or through relations, in every admin of the project.

Its changelist also answers a date that cannot exist or cannot be bounded
(``?placed_at__year=9999&placed_at__month=12``) like any other bad filter,
instead of letting Django's date arithmetic fail with a 500.
"""

from __future__ import annotations

from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.db.models.constants import LOOKUP_SEP

# Model label -> fields that hold secrets. A user's password is one too, on
# any user model.
SECRET_FIELDS: dict[str, frozenset[str]] = {
    "payments.PaymentMethod": frozenset({"webhook_secret", "api_key"}),
}


def is_secret(field) -> bool:
    """Return whether a model field (or relation) holds a secret."""
    model = field.model
    if field.name in SECRET_FIELDS.get(model._meta.label, ()):
        return True
    return field.name == "password" and issubclass(model, AbstractBaseUser)


def lookup_touches_secret(model: type[models.Model], lookup: str) -> bool:
    """
    Return whether ``lookup`` (``a__b__c__startswith``) reads a secret field.

    Each part is resolved through the model's relations, forward and
    reverse; the first part that is not a field starts the transforms and
    the lookup type, which cannot reach another field.
    """
    opts = model._meta
    for part in lookup.split(LOOKUP_SEP):
        try:
            field = opts.get_field(part)
        except FieldDoesNotExist:
            return False
        if is_secret(field):
            return True
        if not field.is_relation or field.related_model is None:
            return False
        opts = field.related_model._meta
    return False


class NoSecretLookupsMixin:
    """
    Refuse admin URL lookups that touch a secret, for every user.

    A refused lookup raises ``DisallowedModelAdminLookup`` in the changelist,
    which Django answers with a 400.
    """

    def lookup_allowed(self, lookup, value, request=None):
        if lookup_touches_secret(self.model, lookup):
            return False
        return super().lookup_allowed(lookup, value, request)

    def get_changelist(self, request, **kwargs):
        return BoundedChangeList


class BoundedChangeList(ChangeList):
    """A changelist whose date filters fail as bad parameters, never as a 500."""

    def get_filters(self, request):
        try:
            return super().get_filters(request)
        except (ValueError, OverflowError) as exc:
            # The date hierarchy computes the end of year 9999 or of its
            # December: past what a datetime holds.
            raise IncorrectLookupParameters(exc) from exc
