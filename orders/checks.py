"""System checks: configuration mistakes surface at start-up, not mid-shift."""

from django.core import checks
from django.core.exceptions import ImproperlyConfigured


@checks.register()
def check_discouraged_transitions(app_configs, **kwargs):
    from orders.policy import discouraged_transitions

    try:
        discouraged_transitions()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="orders.E001")]
    return []
