"""A complaint portal in Django: the form, the team queue, and the providers' webhooks, one port.

Run: ``python examples/django_portal/manage.py runserver`` and open the URL it prints. It uses
``$OMNICHANNEL_CONFIG`` (a ``web`` connector named ``portal``), else a new SQLite database in a
temporary folder. ``portal.wsgi`` hands ``/webhooks/<name>``, ``/receipts/``, ``/healthz`` and
``/metrics`` to omnichannel's own WSGI app (``create_app``) and the rest to Django. The
templates are the ones the Flask and FastAPI portals share (Django's Jinja2 backend). The
queue pages have no login here: a real portal puts them behind its own.
"""
