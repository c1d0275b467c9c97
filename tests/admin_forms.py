"""Post admin change forms as a browser would, built from the page the admin rendered."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

_NOT_SENT = {"submit", "button", "image", "reset", "file"}


class _FormFields(HTMLParser):
    """Collect the name/value pairs a browser sends for one ``<form id=...>``."""

    def __init__(self, form_id: str) -> None:
        super().__init__(convert_charrefs=True)
        self.form_id = form_id
        self.inside = False
        self.found = False
        self.pairs: list[tuple[str, str]] = []
        self._textarea: tuple[str, list[str]] | None = None
        self._select: tuple[str, bool, list[tuple[str, bool]]] | None = None
        self._option: list[str] | None = None
        self._option_attrs: dict[str, str | None] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "form":
            self.inside = named.get("id") == self.form_id
            self.found = self.found or self.inside
            return
        if not self.inside:
            return
        name = named.get("name")
        disabled = "disabled" in named
        if tag == "input" and name and not disabled:
            kind = (named.get("type") or "text").lower()
            if kind in _NOT_SENT:
                return
            if kind in {"checkbox", "radio"}:
                if "checked" in named:
                    self.pairs.append((name, named.get("value") or "on"))
                return
            self.pairs.append((name, named.get("value") or ""))
        elif tag == "textarea" and name and not disabled:
            self._textarea = (name, [])
        elif tag == "select" and name and not disabled:
            self._select = (name, "multiple" in named, [])
        elif tag == "option" and self._select is not None:
            self._option = []
            self._option_attrs = named

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._textarea[1].append(data)
        if self._option is not None:
            self._option.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "textarea" and self._textarea is not None:
            name, text = self._textarea
            # Browsers drop the one newline that follows <textarea>.
            self.pairs.append((name, "".join(text).removeprefix("\n")))
            self._textarea = None
        elif tag == "option" and self._option is not None and self._select is not None:
            value = self._option_attrs.get("value")
            text = "".join(self._option).strip()
            self._select[2].append(
                (text if value is None else value, "selected" in self._option_attrs)
            )
            self._option = None
        elif tag == "select" and self._select is not None:
            name, multiple, options = self._select
            chosen = [value for value, selected in options if selected]
            if not chosen and not multiple and options:
                chosen = [options[0][0]]
            self.pairs.extend((name, value) for value in chosen)
            self._select = None


def browser_post_data(response, *, form_id: str | None = None, **changes: Any) -> dict[str, Any]:
    """
    Return what a browser would post for the admin change form in ``response``.

    Every field of the form as rendered (the model form's fields, each inline
    formset's management form and rows), then ``changes`` on top: a value
    replaces the field's, ``None`` removes the field (an unchecked checkbox).
    """
    if form_id is None:
        form_id = f"{response.context['opts'].model_name}_form"
    parser = _FormFields(form_id)
    parser.feed(response.content.decode(response.charset or "utf-8"))
    parser.close()
    assert parser.found, f"no <form id={form_id!r}> on the page"
    data: dict[str, Any] = {}
    for name, value in parser.pairs:
        if name in data:
            previous = data[name]
            data[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            data[name] = value
    for name, value in changes.items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value
    return data


def form_errors(response) -> list[str]:
    """Return every error a re-rendered admin change form shows (empty if none)."""
    context = response.context
    if context is None or "adminform" not in context:
        return []
    errors = [
        f"{field}: {'; '.join(msgs)}" for field, msgs in context["adminform"].form.errors.items()
    ]
    for inline in context.get("inline_admin_formsets", []):
        formset = inline.formset
        errors.extend(str(error) for error in formset.non_form_errors())
        errors.extend(str(error) for error in formset.errors if error)
    return errors


def post_change_form(client, url: str, *, page=None, **changes: Any):
    """
    Load the change form at ``url`` (or use ``page``, already loaded) and post it back.

    Return the response; the caller asserts what was saved.
    """
    page = page if page is not None else client.get(url)
    assert page.status_code == 200, page.status_code
    return client.post(url, browser_post_data(page, **changes))


def assert_saved(response) -> None:
    """Fail with the form's errors unless the admin accepted the form (a redirect)."""
    assert response.status_code == 302, (response.status_code, form_errors(response))
