"""Project-level guarantees: migrations complete, production settings hardened."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parent.parent


def manage(*args, **env):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.django_db
def test_no_missing_migrations():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_production_settings_pass_the_deploy_check():
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="orders.example.com",
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key():
    result = manage("check", DJANGO_DEBUG="0")

    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


def bare_python(code: str, **env):
    """Run ``python -c code`` in the project with no environment but PATH and ``env``."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_started_with_no_environment_it_refuses_and_says_what_to_set():
    result = bare_python("import orderflow.wsgi")

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "DJANGO_SECRET_KEY must be set" in result.stderr
    assert "DJANGO_DEBUG=1 for local development" in result.stderr


def test_debug_is_off_unless_the_environment_turns_it_on():
    show = "import orderflow.wsgi; from django.conf import settings; print(settings.DEBUG)"

    production = bare_python(show, DJANGO_SECRET_KEY=secrets.token_urlsafe(50))
    development = bare_python(show, DJANGO_DEBUG="1")

    assert (production.returncode, production.stdout) == (0, "False\n"), production.stderr
    assert (development.returncode, development.stdout) == (0, "True\n"), development.stderr


def test_the_tests_run_with_a_throwaway_key(settings):
    assert settings.SECRET_KEY != "django-insecure-orderflow-development-key-not-for-production"
    assert len(settings.SECRET_KEY) >= 50


def test_only_the_callback_view_may_be_csrf_exempt():
    from django.urls import get_resolver

    allowed = {"payments.views.gateway_callback"}

    def walk(patterns):
        for p in patterns:
            if hasattr(p, "url_patterns"):
                yield from walk(p.url_patterns)
            else:
                yield p.callback

    exempt = {
        f"{cb.__module__}.{cb.__name__}"
        for cb in walk(get_resolver().url_patterns)
        if getattr(cb, "csrf_exempt", False)
    }
    assert exempt == allowed
