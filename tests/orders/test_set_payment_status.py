"""Section 10: the set_payment_status command (selection, rules, audit, output, exit status)."""

import os
import subprocess
import sys
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from orderflow.audit import Channel
from orders.bulk import batch_locked
from orders.models import Order
from orders.models import PaymentStatus as S
from orders.policy import discouraged_reason
from payments.models import GatewayEvent
from payments.services import apply_gateway_event
from tests.factories import PaymentMethodFactory, event

pytestmark = pytest.mark.django_db

PROJECT = Path(__file__).resolve().parents[2]


def run(*args: str) -> tuple[int, str, str]:
    """Run the command as call_command would; return (exit status, stdout, stderr)."""
    out, err = StringIO(), StringIO()
    try:
        call_command("set_payment_status", *args, stdout=out, stderr=err)
    except CommandError as exc:
        return exc.returncode, out.getvalue() + str(exc), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


def status(order) -> str:
    return Order.objects.get(pk=order.pk).status


def history_count() -> int:
    return Order.history.count()


def numbers(*orders) -> str:
    return ",".join(order.number for order in orders)


def test_dry_run_writes_nothing_and_says_what_would_change(make_order):
    first, second, paid = make_order(), make_order(), make_order(S.PAID)
    records = history_count()

    code, out, _err = run(
        "--to", "cancelled", "--reason", "x", "--orders", numbers(first, second, paid), "--dry-run"
    )

    assert code == 1  # paid -> cancelled would be refused: the run would not do everything
    assert f"would change {first.number}: awaiting_payment -> cancelled" in out
    assert f"would change {second.number}: awaiting_payment -> cancelled" in out
    assert "Dry run, nothing written: 3 order(s) selected" in out
    assert "would change: 2" in out
    assert "refused as discouraged: 1" in out
    assert history_count() == records
    assert [status(first), status(second), status(paid)] == [S.AWAITING_PAYMENT] * 2 + [S.PAID]


def test_dry_run_names_the_first_twenty_and_counts_the_rest(make_order):
    orders = [make_order() for _ in range(23)]

    code, out, _err = run(
        "--to", "cancelled", "--reason", "x", "--orders", numbers(*orders), "--dry-run"
    )

    assert code == 0
    assert out.count("would change T") == 20
    assert "... and 3 more" in out
    assert all(status(order) == S.AWAITING_PAYMENT for order in orders)


def test_list_selection_changes_only_the_listed_orders(make_order):
    first, second, other = make_order(), make_order(S.AUTHORIZED), make_order()

    code, out, _err = run(
        "--to", "declined", "--reason", "card blocked", "--orders", numbers(first, second)
    )

    assert code == 0
    assert "changed: 2" in out
    assert [status(first), status(second), status(other)] == [
        S.DECLINED,
        S.DECLINED,
        S.AWAITING_PAYMENT,
    ]


def test_plain_file_one_number_a_line(make_order, tmp_path):
    first, second, other = make_order(), make_order(), make_order()
    path = tmp_path / "numbers.txt"
    path.write_text(f"\n  {first.number}  \n\n{second.number}\n   \n")

    code, out, _err = run("--to", "cancelled", "--reason", "x", "--from-file", str(path))

    assert code == 0, out
    assert "changed: 2" in out
    assert [status(first), status(second), status(other)] == [
        S.CANCELLED,
        S.CANCELLED,
        S.AWAITING_PAYMENT,
    ]


def test_csv_file_with_a_number_column(make_order, tmp_path):
    first, second, other = make_order(), make_order(), make_order()
    path = tmp_path / "export.csv"
    path.write_text(
        f"customer,Number,amount\nann, {first.number} ,10\nbob,,5\n\ncid,{second.number},7\n"
    )

    code, out, _err = run("--to", "cancelled", "--reason", "x", "--from-file", str(path))

    assert code == 0, out
    assert [status(first), status(second), status(other)] == [
        S.CANCELLED,
        S.CANCELLED,
        S.AWAITING_PAYMENT,
    ]


def test_filters_select_by_status_method_and_age(make_order, offline_method):
    now = timezone.now()
    old_online = make_order(placed_at=now - timedelta(days=9))
    old_offline = make_order(method=offline_method, placed_at=now - timedelta(days=9))
    recent_offline = make_order(method=offline_method, placed_at=now - timedelta(days=2))
    old_paid_offline = make_order(method=offline_method, placed_at=now - timedelta(days=9))
    Order.objects.filter(pk=old_paid_offline.pk).update(status=S.DECLINED)

    code, out, _err = run(
        "--to", "cancelled", "--reason", "unpaid for a week",
        "--status", "awaiting_payment", "--method", offline_method.code, "--older-than", "7d",
    )  # fmt: skip

    assert code == 0, out
    assert "changed: 1" in out
    assert status(old_offline) == S.CANCELLED
    assert status(old_online) == S.AWAITING_PAYMENT
    assert status(recent_offline) == S.AWAITING_PAYMENT
    assert status(old_paid_offline) == S.DECLINED


def test_status_filter_takes_repeats_and_comma_lists(make_order):
    waiting, declined, authorized, paid = (
        make_order(),
        make_order(S.DECLINED),
        make_order(S.AUTHORIZED),
        make_order(S.PAID),
    )

    code, out, _err = run(
        "--to", "cancelled", "--reason", "x", "--status", "awaiting_payment,declined",
        "--status", "authorized",
    )  # fmt: skip

    assert code == 0, out
    assert [status(waiting), status(declined), status(authorized), status(paid)] == [
        S.CANCELLED,
        S.CANCELLED,
        S.CANCELLED,
        S.PAID,
    ]


def test_a_list_is_narrowed_by_the_filters(make_order):
    waiting, authorized, unlisted = make_order(), make_order(S.AUTHORIZED), make_order()

    code, out, _err = run(
        "--to", "cancelled", "--reason", "x", "--orders", numbers(waiting, authorized),
        "--status", "awaiting_payment",
    )  # fmt: skip

    assert code == 0, out
    assert "changed: 1" in out
    assert "not matching the filters: 1" in out
    assert [status(waiting), status(authorized), status(unlisted)] == [
        S.CANCELLED,
        S.AUTHORIZED,
        S.AWAITING_PAYMENT,
    ]


def test_discouraged_change_is_refused_then_made_with_the_flag(make_order):
    paid = make_order(S.PAID)
    warning = discouraged_reason(S.PAID, S.CANCELLED)

    code, out, _err = run("--to", "cancelled", "--reason", "fraud", "--orders", paid.number)

    assert code == 1
    assert "refused as discouraged: 1" in out
    assert f"refused as discouraged: {paid.number} (paid)" in out
    assert warning in out
    assert status(paid) == S.PAID

    code, out, _err = run(
        "--to", "cancelled", "--reason", "fraud", "--orders", paid.number, "--allow-discouraged"
    )

    assert code == 0, out
    assert status(paid) == S.CANCELLED
    record = paid.history.latest("history_date")
    assert record.history_change_reason == f"fraud (discouraged change confirmed: {warning})"


def test_unknown_numbers_exit_1_and_are_named(make_order):
    order = make_order()

    code, out, _err = run(
        "--to", "cancelled", "--reason", "x", "--orders", f"NOPE-1,{order.number},NOPE-2"
    )

    assert code == 1
    assert "not found: NOPE-1, NOPE-2" in out
    assert "changed: 1" in out
    assert status(order) == S.CANCELLED


def test_long_lists_of_problems_end_with_how_many_more():
    missing = ",".join(f"NOPE-{i}" for i in range(25))

    code, out, _err = run("--to", "cancelled", "--reason", "x", "--orders", missing)

    assert code == 1
    assert "NOPE-19 and 5 more" in out
    assert "NOPE-20" not in out.split("not found:")[-1].split("and 5 more")[0]


def test_running_twice_changes_nothing_the_second_time(make_order):
    orders = [make_order() for _ in range(3)]
    args = [
        "--to",
        "cancelled",
        "--reason",
        "x",
        "--status",
        "awaiting_payment",
        "--batch-size",
        "2",
    ]

    assert run(*args)[0] == 0
    records = history_count()
    code, out, _err = run(*args)
    assert code == 0
    assert "changed: 0" in out
    assert history_count() == records

    code, out, _err = run("--to", "cancelled", "--reason", "x", "--orders", numbers(*orders))
    assert code == 0
    assert "already in target: 3" in out
    assert history_count() == records


def test_history_records_carry_reason_channel_and_user(make_order, supervisor):
    anonymous, named = make_order(), make_order()

    run("--to", "cancelled", "--reason", "  customer asked  ", "--orders", anonymous.number)
    run(
        "--to",
        "cancelled",
        "--reason",
        "by phone",
        "--orders",
        named.number,
        "--user",
        supervisor.username,
    )

    first = anonymous.history.latest("history_date")
    assert (first.status, first.channel, first.history_user, first.history_change_reason) == (
        S.CANCELLED,
        Channel.COMMAND,
        None,
        "customer asked",
    )
    assert first.history_type == "~"
    second = named.history.latest("history_date")
    assert (second.channel, second.history_user, second.history_change_reason) == (
        Channel.COMMAND,
        supervisor,
        "by phone",
    )
    assert anonymous.history.count() == named.history.count() == 2


def test_user_permissions_apply(make_order, staff_user, overriding_clerk):
    waiting, paid = make_order(), make_order(S.PAID)

    code, out, _err = run(
        "--to",
        "cancelled",
        "--reason",
        "x",
        "--orders",
        waiting.number,
        "--user",
        staff_user.username,
    )
    assert code == 1
    assert "refused: not allowed: 1" in out
    assert status(waiting) == S.AWAITING_PAYMENT

    code, out, _err = run(
        "--to", "cancelled", "--reason", "x", "--orders", numbers(waiting, paid),
        "--user", overriding_clerk.username, "--allow-discouraged",
    )  # fmt: skip
    assert code == 1
    assert f"refused: not allowed: {paid.number} (paid)" in out
    assert [status(waiting), status(paid)] == [S.CANCELLED, S.PAID]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--to", "cancelled", "--reason", "x"], "Select the orders"),
        (["--to", "gone", "--reason", "x", "--orders", "A1"], "is not a payment status"),
        (["--to", "cancelled", "--reason", "x", "--status", "unpaid"], "is not a payment status"),
        (["--reason", "x", "--orders", "A1"], "--to is required"),
        (["--to", "cancelled", "--reason", "x", "--orders", "A1", "--user", "nobody"], "no user"),
        (["--to", "cancelled", "--reason", "x", "--older-than", "7 days"], "is not an age"),
        (["--to", "cancelled", "--reason", "x", "--older-than", "0d"], "more than zero"),
        (["--to", "cancelled", "--reason", "x", "--method", "nope"], "no payment method"),
        (["--to", "cancelled", "--reason", "   ", "--orders", "A1"], "--reason is required"),
        (["--to", "cancelled", "--orders", "A1"], "--reason is required"),
        (["--to", "cancelled", "--reason", "x", "--orders", " , "], "names no order"),
        (
            ["--to", "cancelled", "--reason", "x", "--orders", "A1", "--batch-size", "0"],
            "batch-size",
        ),
        (["--to", "cancelled", "--reason", "x", "--from-file", "/no/such/file"], "Cannot read"),
    ],
)
def test_usage_errors_exit_2_and_change_nothing(make_order, args, message):
    order = make_order()
    records = history_count()

    code, out, _err = run(*args)

    assert code == 2
    assert message in out
    assert history_count() == records
    assert status(order) == S.AWAITING_PAYMENT


def test_csv_without_a_number_column_is_a_usage_error(make_order, tmp_path):
    order = make_order()
    path = tmp_path / "orders.csv"
    path.write_text(f"order,amount\n{order.number},10\n")

    code, out, _err = run("--to", "cancelled", "--reason", "x", "--from-file", str(path))

    assert code == 2
    assert "without a 'number' column" in out
    assert "order, amount" in out
    assert status(order) == S.AWAITING_PAYMENT


def test_usage_error_exit_status_from_the_command_line():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}

    done = subprocess.run(
        [sys.executable, "manage.py", "set_payment_status", "--to", "cancelled", "--reason", "x"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 2, done.stderr
    assert "Select the orders" in done.stderr


def test_no_progress_bar_when_stderr_is_not_a_terminal(make_order):
    order = make_order()

    code, _out, err = run("--to", "cancelled", "--reason", "x", "--orders", order.number)

    assert code == 0
    assert err == ""


class Terminal(StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal(make_order):
    orders = [make_order() for _ in range(3)]
    err = Terminal()

    call_command(
        "set_payment_status", "--to=cancelled", "--reason=x", "--status=awaiting_payment",
        "--batch-size=2", stdout=StringIO(), stderr=err,
    )  # fmt: skip

    assert "3/3" in err.getvalue()
    assert all(status(order) == S.CANCELLED for order in orders)


def _refuse_history_of(number: str) -> None:
    """Make the database refuse any history record of the order ``number``."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE FUNCTION refuse_history() RETURNS trigger AS $$ BEGIN "
                f"IF NEW.number = '{number}' THEN RAISE EXCEPTION 'refused by test'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                "CREATE TRIGGER refuse_history BEFORE INSERT ON orders_historicalorder "
                "FOR EACH ROW EXECUTE FUNCTION refuse_history()"
            )
        else:
            cursor.execute(
                "CREATE TRIGGER refuse_history BEFORE INSERT ON orders_historicalorder "
                f"WHEN NEW.number = '{number}' BEGIN SELECT RAISE(ABORT, 'refused by test'); END"
            )


def test_a_failing_batch_is_reported_and_the_batch_before_it_kept(make_order):
    orders = [make_order() for _ in range(5)]
    _refuse_history_of(orders[3].number)  # in the second batch of two
    records = history_count()

    code, out, _err = run(
        "--to", "cancelled", "--reason", "x", "--status", "awaiting_payment", "--batch-size", "2"
    )

    assert code == 1
    assert "changed: 3" in out
    assert "failed: 2" in out
    assert f"failed: {orders[2].number}, {orders[3].number}" in out
    assert "1 batch(es) failed" in out
    assert [status(order) for order in orders] == [
        S.CANCELLED,
        S.CANCELLED,
        S.AWAITING_PAYMENT,
        S.AWAITING_PAYMENT,
        S.CANCELLED,
    ]
    assert history_count() == records + 3
    assert [o.attention_code for o in Order.objects.filter(pk__in=[o.pk for o in orders])] == [
        ""
    ] * 5


def test_an_order_whose_status_moved_after_selection_is_left_alone(make_order):
    orders = [make_order() for _ in range(4)]
    late = orders[3]  # in the second batch

    def capture_during_the_first_batch(sender, pks, **kwargs):
        if late.pk not in pks and status(late) == S.AWAITING_PAYMENT:
            apply_gateway_event(late, event("captured", "100.00"))

    batch_locked.connect(capture_during_the_first_batch)
    try:
        code, out, _err = run(
            "--to",
            "cancelled",
            "--reason",
            "x",
            "--status",
            "awaiting_payment",
            "--batch-size",
            "2",
        )
    finally:
        batch_locked.disconnect(capture_during_the_first_batch)

    assert code == 0, out
    assert "changed: 3" in out
    assert "skipped: status changed: 1" in out
    assert status(late) == S.PAID
    assert not late.history.filter(status=S.CANCELLED).exists()


def test_orders_of_another_method_are_not_selected_by_method(make_order):
    other = PaymentMethodFactory(code="other")
    mine, theirs = make_order(), make_order(method=other)

    code, out, _err = run("--to", "cancelled", "--reason", "x", "--method", other.code)

    assert code == 0, out
    assert [status(mine), status(theirs)] == [S.AWAITING_PAYMENT, S.CANCELLED]
    assert GatewayEvent.objects.count() == 0
