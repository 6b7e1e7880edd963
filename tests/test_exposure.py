"""Least exposure of /healthz and /metrics: they show states and counts, never an error's text,
a path, a process id or configuration; they answer only clients in ``server.status_allow``
(403) and, with ``server.status_token`` set, only a matching bearer token (401) — checked
against the connecting address, never X-Forwarded-For."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from omnichannel import Inbox
from omnichannel.config import parse_config
from omnichannel.errors import ConfigError
from omnichannel.http import create_app
from omnichannel.testing.http import serve_wsgi

TOKEN = "token-status-uji-4f3e2d1c"
STATUS_PATHS = ("/healthz", "/metrics")


def status_inbox(database_url: str, **server: Any) -> Inbox:
    return Inbox(parse_config({"database": {"url": database_url}, "server": server}))


def wsgi_get(
    app: Callable[..., Any], path: str, remote: str | None, **headers: str
) -> tuple[int, dict[str, str], bytes]:
    """Call the WSGI app as a server would for a client at ``remote`` (REMOTE_ADDR)."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8080",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
    }
    if remote is not None:
        environ["REMOTE_ADDR"] = remote
    environ.update({"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()})
    answer: dict[str, Any] = {}

    def start_response(status: str, header_list: list[tuple[str, str]]) -> None:
        answer["status"], answer["headers"] = int(status.split()[0]), dict(header_list)

    body = b"".join(app(environ, start_response))
    return answer["status"], answer["headers"], body


@pytest.fixture
def open_inbox(database_url: str) -> Iterator[Inbox]:
    with status_inbox(database_url) as inbox:
        yield inbox


# -- who may read them -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("remote", "allowed"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("10.20.30.40", True),
        ("172.31.255.1", True),
        ("192.168.1.7", True),
        ("fd12:3456::1", True),
        ("::ffff:192.168.1.7", True),  # IPv4-mapped: its IPv4 address counts
        ("localhost", True),  # waitress on a Unix socket
        ("203.0.113.5", False),
        ("172.32.0.1", False),
        ("2001:db8::1", False),
        ("::ffff:8.8.8.8", False),
        ("", False),
        (None, False),
        ("not-an-address", False),
        ("10.0.0.1, 203.0.113.5", False),
    ],
)
def test_by_default_only_loopback_and_private_networks_may_read_them(
    sqlite_inbox: Inbox, remote: str | None, allowed: bool
) -> None:
    """The default ``status_allow`` is loopback and the private networks: a monitor beside
    the daemon or on its container network reads both; an address on the internet, a missing
    or unreadable one gets 403."""
    app = create_app(sqlite_inbox)
    for path in STATUS_PATHS:
        status, _, body = wsgi_get(app, path, remote)
        if allowed:
            assert status == 200, (path, remote)
        else:
            assert status == 403 and json.loads(body) == {"error": "forbidden"}, (path, remote)


def test_x_forwarded_for_is_never_trusted(sqlite_inbox: Inbox) -> None:
    """A client on the internet that claims a loopback or private address in X-Forwarded-For
    (or X-Real-IP, Forwarded) is still refused: only the connecting address counts."""
    app = create_app(sqlite_inbox)
    claims = {
        "X-Forwarded-For": "127.0.0.1",
        "X-Real-IP": "10.0.0.1",
        "Forwarded": "for=127.0.0.1",
    }
    for path in STATUS_PATHS:
        assert wsgi_get(app, path, "203.0.113.5", **claims)[0] == 403


def test_an_allow_list_without_loopback_refuses_a_local_client_over_http(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With ``status_allow = ["10.0.0.0/8"]`` a client on 127.0.0.1 gets 403 (one log line, no
    traceback) from both, while webhooks and receipts are not affected by it."""
    with (
        status_inbox(database_url, status_allow=["10.0.0.0/8"]) as inbox,
        serve_wsgi(create_app(inbox)) as base_url,
    ):
        for path in STATUS_PATHS:
            caplog.clear()
            answer = requests.get(base_url + path, timeout=10)
            assert answer.status_code == 403 and answer.json() == {"error": "forbidden"}
            lines = [r for r in caplog.records if r.name == "omnichannel.http"]
            assert len(lines) == 1 and lines[0].exc_info is None
            assert "status_allow" in lines[0].getMessage()
        assert requests.get(base_url + "/receipts/abcdefgh12", timeout=10).status_code == 404


def test_an_empty_allow_list_refuses_everyone_and_anyone_opens_them(sqlite_inbox: Inbox) -> None:
    """``status_allow = []`` turns them off for every client; ``["0.0.0.0/0", "::/0"]`` opens
    them to any address."""
    url = sqlite_inbox.config.database.url
    with status_inbox(url, status_allow=[]) as closed:
        assert wsgi_get(create_app(closed), "/healthz", "127.0.0.1")[0] == 403
    with status_inbox(url, status_allow=["0.0.0.0/0", "::/0"]) as opened:
        app = create_app(opened)
        assert wsgi_get(app, "/healthz", "203.0.113.5")[0] == 200
        assert wsgi_get(app, "/metrics", "2001:db8::1")[0] == 200


WRONG_AUTHORIZATIONS = [
    None,
    "",
    "Bearer",
    "Bearer ",
    "Bearer wrong-token",
    f"Bearer {TOKEN}x",
    f"Bearer {TOKEN[:-1]}",
    f"Basic {TOKEN}",
    "Bearer \u00e9\u00e9",  # non-ASCII: compare_digest would raise on str
    "Bearer " + "9" * 5000,
]


def test_without_the_bearer_token_they_answer_401(database_url: str) -> None:
    """With ``status_token`` set, a request without it, with another token, another scheme or
    a non-ASCII one gets 401 with ``WWW-Authenticate: Bearer`` and nothing else — over HTTP."""
    with (
        status_inbox(database_url, status_token=TOKEN) as inbox,
        serve_wsgi(create_app(inbox)) as base_url,
    ):
        for authorization in WRONG_AUTHORIZATIONS:
            headers = {} if authorization is None else {"Authorization": authorization}
            for path in STATUS_PATHS:
                answer = requests.get(base_url + path, headers=headers, timeout=10)
                assert answer.status_code == 401, (path, authorization)
                assert answer.headers["WWW-Authenticate"].startswith("Bearer")
                assert answer.json() == {"error": "bearer token required"}
                assert TOKEN not in answer.text


def test_with_the_bearer_token_they_answer(database_url: str) -> None:
    """The right token (the scheme in any case) opens both; outside the allow-list it does not:
    the network check comes first (403)."""
    with (
        status_inbox(database_url, status_token=TOKEN) as inbox,
        serve_wsgi(create_app(inbox)) as base_url,
    ):
        for scheme in ("Bearer", "bearer", "BEARER"):
            for path in STATUS_PATHS:
                headers = {"Authorization": f"{scheme} {TOKEN}"}
                assert requests.get(base_url + path, headers=headers, timeout=10).ok
        app = create_app(inbox)
        assert wsgi_get(app, "/healthz", "203.0.113.5", Authorization=f"Bearer {TOKEN}")[0] == 403


def test_the_token_comes_from_the_environment_and_stays_secret(tmp_path: Path) -> None:
    """``status_token = "${STATUS_TOKEN}"`` reads the environment like every secret; it is not
    in the configuration's repr or JSON; ``${STATUS_TOKEN:-}`` unset means no token."""
    base = {"database": {"url": f"sqlite:///{tmp_path / 'o.db'}"}}
    config = parse_config(
        base | {"server": {"status_token": "${STATUS_TOKEN}"}}, env={"STATUS_TOKEN": TOKEN}
    )
    token = config.server.status_token
    assert token is not None and token.get_secret_value() == TOKEN
    assert TOKEN not in repr(config) and TOKEN not in config.model_dump_json()
    optional = parse_config(base | {"server": {"status_token": "${STATUS_TOKEN:-}"}}, env={})
    assert optional.server.status_token is None
    with pytest.raises(ConfigError) as missing:
        parse_config(base | {"server": {"status_token": "${STATUS_TOKEN}"}}, env={})
    assert "server.status_token: environment variable STATUS_TOKEN is not set" in str(missing.value)


@pytest.mark.parametrize(
    ("server", "problem"),
    [
        ({"status_allow": ["10.0.0.0/8", "intranet"]}, "server.status_allow"),
        ({"status_allow": ["10.0.0.0/33"]}, "server.status_allow"),
        ({"public_url": "pengaduan.example.go.id"}, "server.public_url"),
        ({"public_url": "ftp://pengaduan.example.go.id"}, "server.public_url"),
        ({"public_url": "https://pengaduan.example.go.id:99999"}, "server.public_url"),
        ({"public_url": "https://exa mple.go.id"}, "server.public_url"),
    ],
)
def test_bad_status_allow_and_public_url_are_config_errors(
    tmp_path: Path, server: dict[str, Any], problem: str
) -> None:
    """A network that is not CIDR, a public URL that is not http(s) with a valid host[:port]:
    a ConfigError naming the key."""
    with pytest.raises(ConfigError) as refused:
        parse_config({"database": {"url": f"sqlite:///{tmp_path / 'o.db'}"}, "server": server})
    assert problem in str(refused.value)


# -- what they show --------------------------------------------------------------------------------

SECRET_PATH_PART = "rahasia-kantor"
DB_PASSWORD = "sandi-basis-data-uji"


def test_healthz_and_metrics_show_no_error_text_path_pid_or_configuration(
    tmp_path: Path,
) -> None:
    """Connectors whose last error names a path, a URL with credentials, a user's e-mail and a
    driver's message: /healthz says only ``failed``/``error`` (details in the log), and
    neither endpoint shows the path of the SQLite file, the process id or the errors' text."""
    folder = tmp_path / SECRET_PATH_PART / "inbox"
    folder.mkdir(parents=True)
    database = tmp_path / SECRET_PATH_PART / "o.db"
    config = parse_config(
        {
            "database": {"url": f"sqlite:///{database}"},
            "connectors": [
                {"name": "files", "type": "files", "path": str(folder)},
                {"name": "drop", "type": "files", "path": str(folder)},
            ],
        }
    )
    errors = {
        "files": f"drop folder {folder} does not exist",
        "drop": f"Gammu database mysql://gammu:{DB_PASSWORD}@10.0.0.9/smsd unreachable; "
        "IMAP login failed for 'pengaduan@example.go.id' (psycopg.OperationalError)",
    }
    with Inbox(config) as inbox:
        inbox.record_health("files", errors["files"], failed=True)
        inbox.record_health("drop", errors["drop"])
        with serve_wsgi(create_app(inbox)) as base_url:
            health = requests.get(base_url + "/healthz", timeout=10)
            metrics = requests.get(base_url + "/metrics", timeout=10)
    data = health.json()
    assert data["connectors"]["files"]["last_error"] == "failed, see the log"
    assert data["connectors"]["drop"]["last_error"] == "error, see the log"
    assert data["connectors"]["files"]["state"] == "failed"
    for text in (health.text, metrics.text):
        for leak in (SECRET_PATH_PART, str(tmp_path), DB_PASSWORD, "example.go.id", "psycopg"):
            assert leak not in text
        assert "pid" not in text and "process_" not in text and "python_info" not in text
    assert str(os.getpid()) not in health.text
    assert set(data["connectors"]["drop"]) == {
        "state",
        "last_success",
        "last_error",
        "failed",
        "lag_seconds",
        "backlog",
    }


def test_an_unreachable_database_is_unavailable_without_its_address_or_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A PostgreSQL URL (with a password) that refuses connections: /healthz answers 503
    ``"database": "unavailable"`` and /metrics ``omnichannel_store_up 0``; neither shows the
    URL, the password, the port or the driver's message."""
    caplog.set_level(logging.WARNING)
    url = f"postgresql+psycopg://omni:{DB_PASSWORD}@127.0.0.1:1/pengaduan?connect_timeout=1"
    config = parse_config({"database": {"url": url}, "connectors": []})
    with (
        Inbox(config, wait_for_database=True) as inbox,
        serve_wsgi(create_app(inbox)) as base_url,
    ):
        health = requests.get(base_url + "/healthz", timeout=30)
        metrics = requests.get(base_url + "/metrics", timeout=30)
    assert health.status_code == 503 and health.json()["database"] == "unavailable"
    assert "omnichannel_store_up 0.0" in metrics.text
    for text in (health.text, metrics.text):
        for leak in (DB_PASSWORD, "127.0.0.1:1", "pengaduan", "refused", "psycopg", "omni:"):
            assert leak not in text
