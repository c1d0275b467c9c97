"""The forms of the order page's money actions: they parse input; the services decide."""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.utils.translation import gettext_lazy as _

from orderflow.money import InvalidAmount, format_money, parse_amount
from payments.availability import MoneyAction
from payments.offline import MAX_REFERENCE_LENGTH


class MoneyActionForm(forms.Form):
    """Base of the action forms: knows the order's currency and the action's balance."""

    has_token = False
    amount_editable = True

    def __init__(self, *args, currency: str, action: MoneyAction | None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.currency = currency
        self.action = action
        if "amount" in self.fields and action is not None and action.limit is not None:
            self.fields["amount"].initial = plain_amount(action.limit, currency)
            self.fields["amount"].help_text = _("At most %(limit)s.") % {
                "limit": format_money(action.limit, currency)
            }

    def clean_amount(self) -> str:
        raw = self.cleaned_data["amount"]
        try:
            parse_amount(raw, what=_("The amount"), currency=self.currency)
        except InvalidAmount as exc:
            raise forms.ValidationError(str(exc), code="invalid_amount") from None
        # The text as typed: the service parses it again, under the order's lock.
        return raw


def plain_amount(amount: Decimal, currency: str) -> str:
    """An amount as staff type it: "40.00", "1500", "1.250" (no currency)."""
    return format_money(amount, currency).split(" ", 1)[0]


def _amount_field() -> forms.CharField:
    return forms.CharField(
        label=_("Amount"),
        max_length=32,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
    )


def _reference_field() -> forms.CharField:
    return forms.CharField(
        label=_("Cheque or transfer number"),
        max_length=MAX_REFERENCE_LENGTH,
        help_text=_("The reference on the cheque or the bank transfer; it is recorded once."),
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )


class TokenForm(MoneyActionForm):
    """An online action: the one-time token issued with the form travels with it."""

    has_token = True
    token = forms.CharField(
        widget=forms.HiddenInput,
        error_messages={"required": _("The form has no request token; reload it and try again.")},
    )


class RecordPaymentForm(MoneyActionForm):
    amount = _amount_field()
    reference = _reference_field()
    reason = forms.CharField(
        label=_("Note"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_("Optional; by default the history says what was received."),
    )


class RecordRefundForm(MoneyActionForm):
    amount = _amount_field()
    reference = _reference_field()
    reason = forms.CharField(label=_("Reason"), widget=forms.Textarea(attrs={"rows": 2}))


class CaptureForm(TokenForm):
    amount = _amount_field()


class VoidForm(TokenForm):
    pass


class RefundForm(TokenForm):
    amount = _amount_field()
    reason = forms.CharField(label=_("Reason"), widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.action is not None and not self.action.partial:
            # The method refunds only the whole balance: shown, sent, not editable.
            self.amount_editable = False
            self.fields["amount"].widget = forms.HiddenInput()
