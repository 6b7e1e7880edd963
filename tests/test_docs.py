"""The documentation: the generated reference pages match the code, the site builds, and the
OpenAPI document is valid and agrees with the application answering real requests."""

from __future__ import annotations

import ast
import base64
import functools
import hashlib
import hmac
import importlib.util
import inspect
import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from importlib.metadata import entry_points, version
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import requests
import yaml
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from omnichannel import Inbox, http
from omnichannel.config import parse_config
from omnichannel.http import create_app
from omnichannel.testing.http import serve_wsgi
from omnichannel.testing.signing import meta_signature
from tests.test_twilio import ACCOUNT, sms_fields
from tests.test_twilio import TOKEN as TWILIO_TOKEN
from tests.test_twilio import sign as twilio_sign
from tests.test_web import SECRET, signed_headers
from tests.test_whatsapp_cloud import APP_SECRET, PNID, VERIFY
from tests.test_whatsapp_cloud import fixture as whatsapp_fixture

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SPEC: dict[str, Any] = yaml.safe_load((DOCS / "openapi.yaml").read_text(encoding="utf-8"))
SPEC_URI = "urn:omnichannel:openapi"
STATUS_TOKEN = "token-monitor-uji"
METHODS = ("get", "post", "put", "patch", "delete")


@functools.cache
def generator() -> ModuleType:
    """``docs/gen_reference.py``, imported without leaving bytecode in ``docs/``."""
    spec = importlib.util.spec_from_file_location("gen_reference", DOCS / "gen_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    writes, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = writes
    return module


@pytest.fixture(scope="module")
def pages() -> dict[str, str]:
    """A fresh generation of the reference pages, by path under ``docs/``."""
    generated: dict[str, str] = generator().generate()
    return generated


# -- generated pages and the site ------------------------------------------------------------


def test_the_generated_reference_pages_match_the_code(pages: dict[str, str]) -> None:
    """Every generated page (config, schema, CLI, changelog) equals a fresh generation."""
    stale = generator().stale(DOCS, pages)
    assert stale == [], (
        f"stale docs pages {stale}: run `.venv/bin/python docs/gen_reference.py` and commit them"
    )


def test_the_check_names_a_changed_or_missing_page(tmp_path: Path, pages: dict[str, str]) -> None:
    """``--check``'s comparison lists a page edited by hand and a page that is missing, and
    only those."""
    for name, text in pages.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    assert generator().stale(tmp_path, pages) == []
    (tmp_path / "reference" / "cli.md").write_text(pages["reference/cli.md"] + "edited\n")
    (tmp_path / "reference" / "schema.md").unlink()
    assert generator().stale(tmp_path, pages) == ["reference/cli.md", "reference/schema.md"]


def test_the_generated_pages_cover_every_command_key_model_and_table(
    pages: dict[str, str],
) -> None:
    """Each CLI command, each option of each connector type registered as an entry point, each
    schema model and each table appears in its page (the generator skips nothing)."""
    import click

    from omnichannel.cli import main
    from omnichannel.registry import connector_class
    from omnichannel.schema import __all__ as models
    from omnichannel.store.tables import metadata

    def commands(group: click.Group, path: str) -> Iterator[str]:
        for name, command in group.commands.items():
            yield f"{path} {name}"
            if isinstance(command, click.Group):
                yield from commands(command, f"{path} {name}")

    assert isinstance(main, click.Group)
    missing = [
        c for c in commands(main, "omnichannel") if f"`{c}`" not in pages["reference/cli.md"]
    ]
    for kind in sorted({ep.name for ep in entry_points(group="omnichannel.connectors")}):
        options = connector_class(kind).Options.model_fields
        section = pages["reference/config.md"].split(f'`type = "{kind}"`', 1)[1]
        missing += [f"{kind}.{key}" for key in options if f"| `{key}` |" not in section]
    schema = pages["reference/schema.md"]
    missing += [m for m in models if m != "format_utc" and f"### `{m}`" not in schema]
    missing += [t for t in metadata.tables if f"### `{t}`" not in schema]
    assert missing == []


def test_the_site_builds_with_every_page_in_its_navigation(tmp_path: Path) -> None:
    """``mkdocs build --strict`` succeeds (no broken link, no missing page) and writes every
    page of the navigation."""
    site = tmp_path / "site"
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))

    def pages(nav: Any) -> Iterator[str]:
        for item in nav:
            for value in item.values():
                yield from pages(value) if isinstance(value, list) else [value]

    listed = list(pages(config["nav"]))
    assert sorted(listed) == sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")), (
        "every page under docs/ is in the navigation of mkdocs.yml, and nothing else"
    )
    for page in listed:
        html = "index.html" if page == "index.md" else page.removesuffix(".md") + "/index.html"
        assert (site / html).is_file(), page


# -- the OpenAPI document -------------------------------------------------------------------


def pointer(*parts: str) -> str:
    """A JSON pointer into the document, as a URI fragment."""
    return "".join("/" + quote(p.replace("~", "~0").replace("/", "~1"), safe="") for p in parts)


def validator(fragment: str) -> Draft202012Validator:
    """A validator for the schema at ``fragment`` of the document, its $refs resolved."""
    resource = Resource.from_contents(SPEC, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(SPEC_URI, resource)
    return Draft202012Validator(
        {"$ref": f"{SPEC_URI}#{fragment}"},
        registry=registry,
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def resolved(node: dict[str, Any], *where: str) -> tuple[dict[str, Any], tuple[str, ...]]:
    """``node`` (at ``where``) with its ``$ref`` followed, and where it really is."""
    while "$ref" in node:
        where = tuple(node["$ref"].removeprefix("#/").split("/"))
        node = SPEC
        for part in where:
            node = node[part]
    return node, where


def test_the_openapi_document_is_valid_and_its_examples_fit_its_schemas() -> None:
    """The document is valid OpenAPI 3.1, has the package's version, and every example
    validates against the schema beside it."""
    validate_openapi(SPEC)
    assert SPEC["info"]["version"] == version("omnichannel")
    checked = 0
    for path, item in SPEC["paths"].items():
        for method in (m for m in METHODS if m in item):
            operation = item[method]
            body = operation.get("requestBody", {}).get("content", {})
            places: list[tuple[tuple[str, ...], dict[str, Any]]] = [
                (("paths", path, method, "requestBody", "content"), body)
            ]
            for status, response in operation["responses"].items():
                answer, where = resolved(response, "paths", path, method, "responses", status)
                places.append(((*where, "content"), answer.get("content", {})))
            for where, content in places:
                for media, entry in content.items():
                    examples = [e["value"] for e in entry.get("examples", {}).values()]
                    examples += [entry["example"]] if "example" in entry else []
                    check = validator(pointer(*where, media, "schema"))
                    for example in examples:
                        check.validate(example)
                        checked += 1
    assert checked >= 15


def served_prefixes() -> set[str]:
    """The paths and path prefixes ``http._App.route`` compares a request's path with (not
    the ``/`` that ends a webhook's connector name)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(http._App.route)))
    found: set[str] = set()
    for node in ast.walk(tree):
        value = node.value if isinstance(node, ast.Constant) else None
        if isinstance(node, ast.Name):
            value = getattr(http, node.id, None)
        if isinstance(value, str) and value.startswith("/") and value != "/":
            found.add(value)
    return found


def test_every_route_of_the_app_is_in_the_document_and_nothing_else() -> None:
    """The paths the app routes are exactly the documented paths (up to their parameter)."""
    documented = {path.split("{", 1)[0] for path in SPEC["paths"]}
    assert served_prefixes() == documented


# -- the document against the application ----------------------------------------------------


@pytest.fixture
def app_inbox(tmp_path: Path) -> Iterator[Inbox]:
    """Every webhook connector type of its own, a status token, a short filing wait."""
    config = parse_config(
        {
            "database": {"url": f"sqlite:///{tmp_path / 'omnichannel.db'}"},
            "server": {"status_token": STATUS_TOKEN},
            "filing": {"wait": 0.3},
            "connectors": [
                {"name": "portal", "type": "web", "secret": SECRET, "max_bytes": 4096},
                {
                    "name": "wa",
                    "type": "whatsapp-cloud",
                    "app_secret": APP_SECRET,
                    "verify_token": VERIFY,
                    "access_token": "EAAG-akses",
                    "phone_number_ids": [PNID],
                },
                {
                    "name": "sms",
                    "type": "twilio",
                    "account_sid": ACCOUNT,
                    "auth_token": TWILIO_TOKEN,
                    "mode": "webhook",
                },
            ],
        }
    )
    with Inbox(config) as inbox:
        yield inbox


class Checker:
    """Sends requests to the served app and holds each answer to the document."""

    def __init__(self, base_url: str) -> None:
        self.base = base_url
        self.seen: list[tuple[str, str, int]] = []

    def __call__(
        self, method: str, template: str, path: str, expected: int, **kwargs: Any
    ) -> requests.Response:
        answer = requests.request(method, self.base + path, timeout=10, **kwargs)
        assert answer.status_code == expected, (method, path, answer.status_code, answer.text)
        self.documented(method.lower(), template, answer)
        self.seen.append((method, template, answer.status_code))
        return answer

    @staticmethod
    def documented(method: str, template: str, answer: requests.Response) -> None:
        operation = SPEC["paths"][template][method]
        status = str(answer.status_code)
        assert status in operation["responses"], f"{method} {template} {status} undocumented"
        response, where = resolved(
            operation["responses"][status], "paths", template, method, "responses", status
        )
        media = answer.headers["Content-Type"].split(";", 1)[0].strip()
        assert media in response["content"], f"{method} {template} {status}: {media}"
        for name, header in response.get("headers", {}).items():
            schema = Draft202012Validator(header["schema"])
            schema.validate(answer.headers[name])
        if media == "application/json":
            validator(pointer(*where, "content", media, "schema")).validate(answer.json())
        else:
            schema = response["content"][media]["schema"]
            Draft202012Validator(schema).validate(answer.text)


def portal_post(check: Checker, body: bytes, expected: int, **headers: str) -> requests.Response:
    return check(
        "POST", "/webhooks/{connector}", "/webhooks/portal", expected, data=body, headers=headers
    )


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes, str]]) -> bytes:
    """A ``multipart/form-data`` body with boundary ``b0undary``."""
    parts = [
        f'--b0undary\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    for key, (name, content, kind) in files.items():
        head = (
            f'--b0undary\r\nContent-Disposition: form-data; name="{key}"; filename="{name}"\r\n'
            f"Content-Type: {kind}\r\n\r\n"
        )
        parts.append(head.encode() + content + b"\r\n")
    return b"".join(parts) + b"--b0undary--\r\n"


def test_every_answer_of_the_running_app_is_documented(app_inbox: Inbox) -> None:
    """Real requests to every route — signed and unsigned, of each connector type, of the
    wrong method, type and size, malformed, a receipt, /healthz, /metrics — are answered with
    a status the document lists for that path and method, and a body its schema accepts."""
    with serve_wsgi(create_app(app_inbox)) as base_url:
        check = Checker(base_url)
        post_web_submissions(check)
        post_provider_webhooks(check, base_url)
        read_monitoring(check)
        check("GET", "/receipts/{receipt}", "/receipts/abcdefgh12", 404)
        follow_a_receipt(check, app_inbox)
    statuses = {status for _, _, status in check.seen}
    assert statuses >= {200, 202, 400, 401, 403, 404, 405, 413, 415}


def documented_signature(body: bytes, webhook_id: str) -> dict[str, str]:
    """Standard Webhooks headers made as the document's security scheme says: ``v1,`` and the
    base64 HMAC-SHA256 of ``{webhook-id}.{webhook-timestamp}.{body}`` with the key's bytes."""
    scheme = SPEC["components"]["securitySchemes"]["webhookSignature"]["description"]
    assert "{webhook-id}.{webhook-timestamp}.{body}" in scheme
    stamp = str(int(time.time()))
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    mac = hmac.new(key, f"{webhook_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "Content-Type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": stamp,
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }


def post_web_submissions(check: Checker) -> None:
    form = {"id": "form-1", "phone": "0812 3456 7890", "message": "Jalan desa rusak parah."}
    body = json.dumps(form).encode()
    first = portal_post(check, body, 200, **documented_signature(body, "msg_1"))
    assert first.json()["outcome"] == "new"
    again = portal_post(check, body, 200, **signed_headers(body, "msg_2"))
    assert again.json()["outcome"] == "duplicate"
    fields = urlencode({"id": "form-2", "message": "Lampu jalan mati.", "location": "-5.1,119.4"})
    kind = "application/x-www-form-urlencoded"
    portal_post(
        check, fields.encode(), 200, **signed_headers(fields.encode(), "m3", content_type=kind)
    )
    upload = multipart(
        {"id": "form-3", "message": "Foto terlampir."},
        {"attachments": ("a.png", b"\x89PNG", "image/png")},
    )
    kind = "multipart/form-data; boundary=b0undary"
    portal_post(check, upload, 200, **signed_headers(upload, "m4", content_type=kind))
    portal_post(check, body, 403, **{"Content-Type": "application/json"})
    bad_lat = json.dumps({"message": "x", "location": {"lat": "utara", "lon": 1}}).encode()
    refused = portal_post(check, bad_lat, 400, **signed_headers(bad_lat, "m5"))
    assert refused.json()["field"] == "location.lat"
    portal_post(check, b"{not json", 400, **signed_headers(b"{not json", "m6"))
    text = b"Jalan rusak"
    portal_post(check, text, 415, **signed_headers(text, "m7", content_type="text/plain"))
    portal_post(check, body, 415, **signed_headers(body, "m8"), **{"Content-Encoding": "gzip"})
    large = json.dumps({"message": "x" * 5000}).encode()
    portal_post(check, large, 413, **signed_headers(large, "m9"))
    check("GET", "/webhooks/{connector}", "/webhooks/portal", 405)
    check("POST", "/webhooks/{connector}", "/webhooks/nope", 404, data=body)


def post_provider_webhooks(check: Checker, base_url: str) -> None:
    hub = {"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "1158201444"}
    echoed = check("GET", "/webhooks/{connector}", "/webhooks/wa", 200, params=hub)
    assert echoed.text == "1158201444"
    wrong = hub | {"hub.verify_token": "salah"}
    check("GET", "/webhooks/{connector}", "/webhooks/wa", 403, params=wrong)
    check(
        "GET", "/webhooks/{connector}", "/webhooks/wa", 400, params=hub | {"hub.challenge": "<b>"}
    )
    note = whatsapp_fixture("text")
    kind = {"Content-Type": "application/json"}
    signed = kind | {"X-Hub-Signature-256": meta_signature(note, APP_SECRET)}
    received = check(
        "POST", "/webhooks/{connector}", "/webhooks/wa", 200, data=note, headers=signed
    )
    assert received.json() == {"received": 1}
    forged = kind | {"X-Hub-Signature-256": meta_signature(note, "bukan-rahasia")}
    check("POST", "/webhooks/{connector}", "/webhooks/wa", 403, data=note, headers=forged)
    fields = sms_fields(1)
    url = f"{base_url}/webhooks/sms"
    twilio = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": ""}
    twiml = check(
        "POST",
        "/webhooks/{connector}",
        "/webhooks/sms",
        200,
        data=urlencode(fields),
        headers=twilio | {"X-Twilio-Signature": twilio_sign(url, fields)},
    )
    assert "<Response" in twiml.text
    check(
        "POST",
        "/webhooks/{connector}",
        "/webhooks/sms",
        403,
        data=urlencode(fields),
        headers=twilio,
    )


def read_monitoring(check: Checker) -> None:
    bearer = {"Authorization": f"Bearer {STATUS_TOKEN}"}
    health = check("GET", "/healthz", "/healthz", 200, headers=bearer)
    assert set(health.json()["connectors"]) == {"portal", "wa", "sms"}
    check("GET", "/healthz", "/healthz", 401)
    metrics = check("GET", "/metrics", "/metrics", 200, headers=bearer)
    assert "omnichannel_store_up 1.0" in metrics.text
    check("GET", "/metrics", "/metrics", 401, headers={"Authorization": "Bearer falsch"})


def follow_a_receipt(check: Checker, inbox: Inbox) -> None:
    """A submission the worker is held from filing gets 202 and a receipt, which says pending,
    then — once the worker files it — the ticket."""
    held = threading.Event()
    real = inbox.worker.file_batch
    inbox.worker.file_batch = lambda **kw: held.wait(10) and real(**kw)  # type: ignore[method-assign]
    inbox.worker.start(interval=0.05)
    body = json.dumps({"id": "form-9", "message": "Pungutan liar di loket."}).encode()
    answer = portal_post(check, body, 202, **signed_headers(body, "m10"))
    path = "/receipts/" + answer.json()["receipt"]
    assert answer.json()["status_url"] == check.base + path
    check("GET", "/receipts/{receipt}", path, 202)
    held.set()
    for _ in range(200):
        found = requests.get(check.base + path, timeout=10)
        if found.status_code == 200:
            break
        time.sleep(0.05)
    filed = check("GET", "/receipts/{receipt}", path, 200)
    assert filed.json()["outcome"] == "new" and filed.json()["ticket"].startswith("ADU-")


def test_methods_the_document_does_not_list_are_never_served(app_inbox: Inbox) -> None:
    """On every documented path, a method the document lists reaches its route (never the
    app's catch-all 404), and any other method is refused with 404 or 405."""
    concrete = {"/webhooks/{connector}": "/webhooks/portal", "/receipts/{receipt}": "/receipts/x"}
    with serve_wsgi(create_app(app_inbox)) as base_url:
        for template, item in SPEC["paths"].items():
            url = base_url + concrete.get(template, template)
            for method in METHODS:
                answer = requests.request(method.upper(), url, timeout=10)
                if method in item:
                    assert answer.content != b'{"error": "not found"}', (method, template)
                else:
                    assert answer.status_code in (404, 405), (method, template)
