"""Gateway callbacks: the only CSRF-exempt view of orderflow."""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from payments.inbox import receive_callback


class _LengthRequired(Exception):
    pass


def _read_body(request: HttpRequest) -> bytes:
    """
    Return the raw body, including one sent with ``Transfer-Encoding: chunked``.

    Django reads ``Content-Length`` bytes, so a chunked body looks empty. A
    server that has already de-chunked the stream says so with
    ``wsgi.input_terminated`` (gunicorn does); the stream is then read to its
    end, within the same size limit as any body. Without that promise the
    body cannot be read safely: raise _LengthRequired.
    """
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if not chunked or request.META.get("CONTENT_LENGTH"):
        return request.body
    if not request.META.get("wsgi.input_terminated"):
        raise _LengthRequired
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    body = request.META["wsgi.input"].read(limit + 1 if limit is not None else -1)
    if limit is not None and len(body) > limit:
        raise RequestDataTooBig
    return body


@csrf_exempt  # Gateways cannot send a CSRF token; the signature authenticates them.
@sensitive_post_parameters()
@require_POST
def gateway_callback(request: HttpRequest, method_code: str) -> JsonResponse:
    """Receive one gateway callback; answer per the inbox's outcome."""
    try:
        body = _read_body(request)
    except _LengthRequired:
        return JsonResponse(
            {"error": _("A chunked body needs a server that de-chunks it; send Content-Length.")},
            status=411,
        )
    except RequestDataTooBig:
        return JsonResponse({"error": _("The body is too large.")}, status=413)
    response = receive_callback(method_code=method_code, body=body, headers=request.headers)
    return JsonResponse(response.body, status=response.http_status)
