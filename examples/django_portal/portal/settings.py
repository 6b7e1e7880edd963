"""One settings module: no database of Django's own (omnichannel keeps the complaints)."""

import os
from pathlib import Path

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-set-DJANGO_SECRET_KEY")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"  # runserver serves it too
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.jinja2.Jinja2",  # auto-escaping, csrf_input
        "DIRS": [Path(__file__).resolve().parents[2] / "portal_templates"],
    }
]
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
TEAM_MEMBER = os.environ.get("PORTAL_TEAM_MEMBER", "petugas")  # a real portal: the user logged in
