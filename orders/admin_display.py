"""Small pieces of the order pages that more than one admin view renders."""

from django.utils.html import format_html
from django.utils.safestring import SafeString

from orders.models import PaymentStatus

# Add to a ModelAdmin's or a view's media: the badge colours, light and dark.
ADMIN_CSS = "orders/admin.css"


def status_badge(status: str) -> SafeString:
    """A payment status as a coloured badge that carries its label as text."""
    try:
        label = PaymentStatus(status).label
    except ValueError:  # a value no longer in the choices: show it as it is
        return format_html('<span class="status-badge">{}</span>', status)
    return format_html('<span class="status-badge status-{}">{}</span>', status, label)
