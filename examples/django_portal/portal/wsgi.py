"""The WSGI application: omnichannel's paths to its own app, the rest to Django."""

import os
from collections.abc import Iterable
from typing import Any

from django.core.wsgi import get_wsgi_application

from omnichannel.http import create_app

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
django_app = get_wsgi_application()

from portal.views import inbox  # noqa: E402  (after Django is set up)

OMNICHANNEL_PATHS = ("/webhooks/", "/receipts/", "/healthz", "/metrics")
hooks = create_app(inbox)


def application(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    return (hooks if path.startswith(OMNICHANNEL_PATHS) else django_app)(environ, start_response)
