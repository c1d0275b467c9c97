"""
Error reports that never show a secret, on a debug server either.

Django's ``SafeExceptionReporterFilter`` honours ``sensitive_variables`` and
``sensitive_post_parameters`` only when ``DEBUG`` is off, so a development
server's error page would list a webhook secret held in a local variable.
This filter is always on, and also hides any local variable whose name looks
like a secret (the same pattern Django uses for settings), wherever the
decorators were forgotten.
"""

from django.views.debug import SafeExceptionReporterFilter


class AlwaysSafeExceptionReporterFilter(SafeExceptionReporterFilter):
    def is_active(self, request) -> bool:
        return True

    def get_traceback_frame_variables(self, request, tb_frame):
        return [
            (name, self.cleansed_substitute if self.hidden_settings.search(name) else value)
            for name, value in super().get_traceback_frame_variables(request, tb_frame)
        ]
