from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class OrdersConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "orders"
    verbose_name = _("Orders")

    def ready(self) -> None:
        import orderflow.audit  # noqa: F401  (connects the history receiver)
        from orders import checks  # noqa: F401  (registers system checks)
