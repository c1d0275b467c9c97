"""
Demo data for a local database: payment methods, orders, a superuser.

Every order is built through the real services, each step inside the audit
context of the channel that would make it in real life and dated along the
order's own story, so the ledger, the gateway events and the history read
like the real thing. ``plan`` says which orders there are and how each one
ends; ``play`` builds them through the services; ``dates`` dates each step;
``load`` puts it together (``load_demo_data``, what ``seed_demo`` calls).
"""


class DemoDataError(Exception):
    """The demo data does not tell the story it was meant to."""
