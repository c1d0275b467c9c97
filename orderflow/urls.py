from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

admin.site.site_header = "orderflow back office"
admin.site.site_title = "orderflow"
admin.site.index_title = "Orders and payments"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/", admin.site.urls),
    path("payments/", include("payments.urls")),
]
