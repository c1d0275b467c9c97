from django.urls import path

from payments import views

app_name = "payments"

urlpatterns = [
    path("callbacks/<slug:method_code>/", views.gateway_callback, name="callback"),
]
