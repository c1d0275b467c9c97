import re
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from orderflow.demo.plan import DEFAULT_ORDERS, build_plan
from orders.models import Order, PaymentStatus
from payments.models import GatewayEvent, PaymentMethod, PaymentTransaction

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("staff_groups")]


@pytest.fixture
def debug(settings):
    # pytest-django forces DEBUG off; the command only runs in development.
    settings.DEBUG = True
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def seed(**options) -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out, **options)
    return out.getvalue()


def printed_password(output: str) -> str:
    match = re.search(r"Password:\s+(\S+)", output)
    assert match, output
    return match.group(1)


def database_counts() -> dict[str, int]:
    return {
        "orders": Order.objects.count(),
        "order history": Order.history.count(),
        "ledger": PaymentTransaction.objects.count(),
        "gateway events": GatewayEvent.objects.count(),
        "methods": PaymentMethod.objects.count(),
        "method history": PaymentMethod.history.count(),
        "users": get_user_model().objects.count(),
    }


def test_seed_demo_covers_every_payment_status(debug):
    seed()

    statuses = set(Order.objects.values_list("status", flat=True))
    assert statuses == set(PaymentStatus.values)
    assert Order.objects.count() == DEFAULT_ORDERS


def test_seed_demo_orders_end_as_planned(debug):
    seed()

    planned = {plan.number: plan.scenario.status for plan in build_plan()}
    assert dict(Order.objects.values_list("number", "status")) == planned


def test_seed_demo_prints_working_demo_only_credentials(debug):
    output = seed()

    assert "http://127.0.0.1:8000/admin/" in output
    assert "Username:  demo" in output
    assert "local demo only" in output
    user = get_user_model().objects.get(username="demo")
    assert user.is_active and user.is_staff and user.is_superuser
    assert user.check_password(printed_password(output))


def test_seed_demo_never_prints_webhook_secrets(debug):
    output = seed()

    secrets = [m.webhook_secret for m in PaymentMethod.objects.filter(kind="online")]
    assert len(secrets) == 3 and all(len(secret) >= 40 for secret in secrets)
    assert not any(secret in output for secret in secrets)


def test_seed_demo_twice_creates_no_duplicates_and_keeps_secrets(debug):
    first_output = seed()
    counts = database_counts()
    secrets = dict(PaymentMethod.objects.values_list("code", "webhook_secret"))

    second_output = seed()

    assert database_counts() == counts
    assert dict(PaymentMethod.objects.values_list("code", "webhook_secret")) == secrets
    assert f"Orders: 0 created, {DEFAULT_ORDERS} already present" in second_output
    assert "Payment methods: 0 created, 5 already present" in second_output
    # A fresh password on every run; the old one stops working.
    user = get_user_model().objects.get(username="demo")
    assert printed_password(first_output) != printed_password(second_output)
    assert user.check_password(printed_password(second_output))


def test_seed_demo_fills_a_missing_webhook_secret_only(debug):
    PaymentMethod.objects.create(
        code="testpay", name="Test gateway", kind="online", gateway="hmac", webhook_secret=""
    )
    PaymentMethod.objects.create(
        code="stripe", name="Stripe", kind="online", gateway="stripe", webhook_secret="whsec_kept"
    )

    seed(orders=0)

    assert len(PaymentMethod.objects.get(code="testpay").webhook_secret) >= 40
    assert PaymentMethod.objects.get(code="stripe").webhook_secret == "whsec_kept"


def test_only_the_intended_orders_need_attention(debug):
    seed()

    intended = {plan.number for plan in build_plan() if plan.attention}
    assert 3 <= len(intended) <= 5
    assert set(Order.objects.needing_attention().values_list("number", flat=True)) == intended
    for order in Order.objects.with_attention():
        assert order.needs_attention is (order.number in intended), order.number
    for number in intended:
        assert Order.objects.get(number=number).attention_reasons, number


def test_every_order_has_history_with_a_channel(debug):
    seed()

    for order in Order.objects.all():
        records = list(order.history.all())
        assert records, order.number
        assert all(record.channel for record in records), order.number
    channels = set(Order.history.values_list("channel", flat=True))
    assert channels == {"storefront", "gateway", "admin", "command"}
    staff_records = Order.history.filter(channel="admin")
    assert staff_records.exists()
    assert all(r.history_user.username == "demo" for r in staff_records)


def test_seed_demo_plan_is_deterministic_and_prefix_stable():
    assert build_plan(60) == build_plan(60)
    assert build_plan(10) == build_plan(60)[:10]
    assert build_plan(60, seed=1) != build_plan(60, seed=2)


def test_seed_demo_orders_option_limits_the_orders(debug):
    seed(orders=5)

    assert sorted(Order.objects.values_list("number", flat=True)) == [
        "D1001",
        "D1002",
        "D1003",
        "D1004",
        "D1005",
    ]


def test_seed_demo_refuses_to_run_without_debug(settings):
    settings.DEBUG = False

    with pytest.raises(CommandError, match="local"):
        seed()

    assert not Order.objects.exists()
    assert not get_user_model().objects.filter(username="demo").exists()


ROLE_USERS = {"viewer": "Order viewer", "clerk": "Payments clerk", "manager": "Payments manager"}


def test_seed_demo_creates_one_staff_user_per_group_with_the_printed_password(debug, client):
    output = seed(orders=0)

    password = printed_password(output)
    for username, group in ROLE_USERS.items():
        assert re.search(rf"^\s+{username}\s+{group}$", output, re.MULTILINE), output
        user = get_user_model().objects.get(username=username)
        assert user.is_active and user.is_staff and not user.is_superuser
        assert list(user.groups.values_list("name", flat=True)) == [group]
        assert user.check_password(password)
        assert client.login(username=username, password=password)
        assert client.get("/admin/orders/order/").status_code == 200


def test_seed_demo_twice_keeps_one_user_per_role_with_the_new_password(debug):
    seed(orders=0)
    users = get_user_model().objects.count()

    output = seed(orders=0)

    assert get_user_model().objects.count() == users
    for username, group in ROLE_USERS.items():
        user = get_user_model().objects.get(username=username)
        assert list(user.groups.values_list("name", flat=True)) == [group]
        assert user.check_password(printed_password(output))


def test_seed_demo_puts_a_role_user_back_in_its_group_only(debug, django_user_model):
    from django.contrib.auth.models import Group

    viewer = django_user_model.objects.create_user(username="viewer", is_superuser=True)
    viewer.groups.add(Group.objects.get(name="Payments manager"))

    seed(orders=0)

    viewer.refresh_from_db()
    assert not viewer.is_superuser
    assert list(viewer.groups.values_list("name", flat=True)) == ["Order viewer"]
