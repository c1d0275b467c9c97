import threading
import time
from dataclasses import dataclass, field

import pytest
from django.contrib.auth.models import Permission

from payments.gateways.hmac import HmacGateway


@pytest.fixture
def cashier(django_user_model):
    """A staff user allowed to capture, void and refund through the gateway."""
    user = django_user_model.objects.create_user(username="cashier", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["capture_payment", "refund_payment"])
    )
    return django_user_model.objects.get(pk=user.pk)


@dataclass
class GatewayCalls:
    """What the built-in gateway was asked: (action, idempotency key), in order."""

    calls: list[tuple[str, str]] = field(default_factory=list)
    delay: float = 0.0
    """Seconds each call takes, so that other clicks arrive while it is in flight."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def keys(self, action: str) -> list[str]:
        return [key for name, key in self.calls if name == action]


@pytest.fixture
def gateway_calls(monkeypatch) -> GatewayCalls:
    """Count the built-in gateway's outbound calls; the simulation still answers."""
    recorder = GatewayCalls()
    for action in ("capture", "void", "refund"):
        original = getattr(HmacGateway, action)

        def counted(self, request, *, credentials, _original=original, _action=action):
            with recorder.lock:
                recorder.calls.append((_action, request.idempotency_key))
            if recorder.delay:
                time.sleep(recorder.delay)
            return _original(self, request, credentials=credentials)

        monkeypatch.setattr(HmacGateway, action, counted)
    return recorder
