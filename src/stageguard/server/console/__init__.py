"""The web console at ``/console``: server-rendered pages over the same stores, roles and checks as the
HTTP API, for people who would rather look than read JSON.

Log in with an API key (the key's project and role apply, exactly as in the API: ``app`` keys read,
``admin`` keys may change things). Pages are Jinja2 templates with every value escaped, a strict Content
Security Policy (scripts and styles only from this server, no inline script), HttpOnly SameSite cookies
and a CSRF token on every form that changes something. ``STAGEGUARD_CONSOLE=0`` turns it off.
"""

from ._app import console_app

__all__ = ["console_app"]
