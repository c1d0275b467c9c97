"""
Settings for the test suite: the real settings, as production starts them.

A plain ``pytest`` needs no environment. The secret key is a new random
value for each run (nothing signed in a test outlives it), so the real
settings load with ``DJANGO_DEBUG`` off, as in production.
"""

import os
import secrets

os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))

from orderflow.settings import *  # noqa: F403

# Django's test client speaks plain HTTP; redirecting it to HTTPS would turn
# every request into a 301.
SECURE_SSL_REDIRECT = False
