"""Gateway callbacks: the only CSRF-exempt view of orderflow."""

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from payments.inbox import receive_callback


@csrf_exempt  # Gateways cannot send a CSRF token; the signature authenticates them.
@require_POST
def gateway_callback(request: HttpRequest, method_code: str) -> JsonResponse:
    """Receive one gateway callback; answer per the inbox's outcome."""
    response = receive_callback(method_code=method_code, body=request.body, headers=request.headers)
    return JsonResponse(response.body, status=response.http_status)
