"""Filenames and identifiers from outside are data, never paths.

Attachment names on every channel come out as one plain, bounded name; provider media ids and
URLs are checked before any request is built from them (a loopback server records every request
it gets, so "no request was made" is observed, not assumed); redirects never carry our
credentials to another host.
"""

from __future__ import annotations

import base64
import json
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from connectors.twilio import TwilioConnector
from connectors.whatsapp_cloud import WhatsAppCloudConnector
from normalizer.email import decode_email
from normalizer.filenames import MAX_FILENAME, MAX_FILENAME_BYTES, safe_filename
from normalizer.jsondoc import decode_json_document
from normalizer.normalize import normalize
from normalizer.twilio import decode_form
from normalizer.web import PORTAL_MAPPING, map_payload, parse_body
from normalizer.whatsapp import MEDIA_SCHEME, decode_whatsapp_message
from omnichannel import Inbox
from omnichannel.config import parse_config
from omnichannel.errors import SkippableError
from omnichannel.http import create_app
from omnichannel.schema import Attachment, InboundMessage
from omnichannel.store.tables import attachments
from omnichannel.testing import meta_signature, standard_webhooks_headers
from omnichannel.testing.http import serve_wsgi
from tests.helpers import raw_json
from tests.test_twilio import ACCOUNT, TOKEN, add_twilio, sid, sms_fields
from tests.test_twilio import post as post_twilio
from tests.test_web import SECRET
from tests.test_web import post as post_web

# (hostile name, what it becomes); FALLBACK marks the "attachment-<n>.<ext>" name.
FALLBACK = "attachment-1.pdf"
HOSTILE = [
    ("../../etc/passwd", "passwd"),
    ("..\\..\\Windows\\win.ini", "win.ini"),
    ("C:\\Windows\\x.exe", "x.exe"),
    ("C:x.exe", "x.exe"),
    ("\\\\server\\share\\bukti.pdf", "bukti.pdf"),
    ("/abs/olut.pdf", "olut.pdf"),
    ("..", FALLBACK),
    (".", FALLBACK),
    ("laporan/", FALLBACK),
    ("a\uff0f..\uff0f..\uff0fbukti.pdf", "bukti.pdf"),  # full-width solidus
    ("kwi\x00tan\x07si.pdf", "kwitansi.pdf"),
    ("surat\r\nX-Injected: 1.pdf", "suratX-Injected: 1.pdf"),
    ("\x1b[31mmerah\x1b[0m.pdf", "[31mmerah[0m.pdf"),
    ("\x9b31mcsi.pdf", "31mcsi.pdf"),  # the one-byte C1 control sequence introducer
    ("invoice\u202efdp.exe", "invoicefdp.exe"),  # right-to-left override
    ("foto\u2066\u2069\u200b.jpg", "foto.jpg"),
    ("CON", "_CON"),
    ("nul.txt", "_nul.txt"),
    ("COM1.pdf", "_COM1.pdf"),
    ("lpt9.tar.gz", "_lpt9.tar.gz"),
    ("-rf", "rf"),
    ("laporan.pdf. . .", "laporan.pdf"),
    (".htaccess", "htaccess"),
]
NOW = datetime.now(UTC)


@dataclass(frozen=True)
class Seen:
    """One request a recording server got."""

    host: str
    path: str
    query: str
    authorization: str | None


class Recorder:
    """A loopback HTTP server that records every request and answers from ``routes``
    (path -> status, headers, body); anything else is a 404."""

    def __init__(self) -> None:
        self.base = ""
        self.seen: list[Seen] = []
        self.routes: dict[str, tuple[str, list[tuple[str, str]], bytes]] = {}

    def __call__(self, environ: dict[str, Any], start: Callable[..., Any]) -> list[bytes]:
        path = environ["PATH_INFO"]
        auth = environ.get("HTTP_AUTHORIZATION")
        self.seen.append(Seen(environ["HTTP_HOST"], path, environ["QUERY_STRING"], auth))
        status, headers, body = self.routes.get(path, ("404 Not Found", [], b"{}"))
        start(status, [*headers, ("Content-Length", str(len(body)))])
        return [body]

    def json(self, path: str, data: Any) -> None:
        self.routes[path] = (
            "200 OK",
            [("Content-Type", "application/json")],
            json.dumps(data).encode(),
        )


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    with serve_wsgi(server) as base:
        server.base = base
        yield server


@pytest.fixture
def elsewhere() -> Iterator[Recorder]:
    """A second recording server: "another host" that must never be asked anything."""
    server = Recorder()
    with serve_wsgi(server) as base:
        server.base = base
        yield server


# -- the shared function -----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "expected"), HOSTILE)
def test_hostile_names_become_one_plain_name(name: str, expected: str) -> None:
    """Directories, drives, controls, bidi marks, device names and dots are taken away; a name
    with nothing left gets the fallback with the content type's extension."""
    assert safe_filename(name, content_type="application/pdf") == expected


def test_long_names_are_bounded_in_characters_and_bytes_keeping_the_extension() -> None:
    """Overlong names stop at 200 characters and 240 UTF-8 bytes, extension kept."""
    ascii_name = safe_filename("a" * 5000 + ".pdf")
    wide_name = safe_filename("\u0628" * 5000 + ".docx")  # two bytes a character
    assert len(ascii_name) == MAX_FILENAME and ascii_name.endswith("a.pdf")
    assert len(wide_name.encode()) <= MAX_FILENAME_BYTES and wide_name.endswith("\u0628.docx")


@given(st.text(max_size=400))
def test_any_name_is_plain_bounded_and_stable(name: str) -> None:
    """Whatever comes in: no separator, control or format character, no leading dot, dash or
    space, no trailing dot or space, no device name, bounded; and cleaning it again keeps it."""
    result = safe_filename(name)
    assert result and "/" not in result and "\\" not in result
    assert not any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") for ch in result)
    assert result[0] not in ".- " and result[-1] not in ". "
    assert result.split(".")[0].rstrip().upper() not in ("CON", "NUL", "AUX", "PRN", "COM1")
    assert len(result) <= MAX_FILENAME and len(result.encode()) <= MAX_FILENAME_BYTES
    assert safe_filename(result) == result


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=120))
def test_a_safe_name_joined_to_a_folder_stays_in_that_folder(name: str) -> None:
    """Writing an attachment as ``folder / safe_filename(name)`` lands in ``folder`` itself."""
    folder = Path("/srv/omnichannel/attachments")
    target = folder / safe_filename(name)
    assert target.parent == folder and target.name == safe_filename(name)
    assert ".." not in target.parts


# -- every channel's decoder --------------------------------------------------------------------


def _email(name: str) -> InboundMessage:
    message = EmailMessage()
    message["From"] = "warga@example.id"
    message["Subject"] = "Lampiran"
    message.set_content("Terlampir.")
    message.add_attachment(b"%PDF-1.4 x", maintype="application", subtype="pdf", filename="x.pdf")
    raw = message.as_bytes().replace(b'filename="x.pdf"', _rfc2231(name))
    return decode_email(raw, connector="email", external_id="e1", received_at=NOW)


def _web_json(name: str) -> InboundMessage:
    item = {"filename": name, "content_type": "application/pdf", "content": "JVBERg=="}
    body = json.dumps({"message": "Terlampir.", "attachments": [item]}).encode()
    return _portal(parse_body("application/json", body))


def _web_multipart(name: str) -> InboundMessage:
    prepared = requests.Request(
        "POST",
        "http://x",
        data={"message": "Terlampir."},
        files={"attachments": ("x.pdf", b"%PDF-1.4", "application/pdf")},
    ).prepare()
    body = bytes(prepared.body or b"")  # type: ignore[arg-type]
    body = body.replace(b'filename="x.pdf"', _rfc2231(name))
    return _portal(parse_body(str(prepared.headers["Content-Type"]), body))


def _rfc2231(name: str) -> bytes:
    """``filename*=UTF-8''...``: how any character, CR, LF and NUL included, reaches a part."""
    return b"filename*=UTF-8''" + quote(name, safe="").encode()


def _portal(data: dict[str, Any]) -> InboundMessage:
    return map_payload(
        data,
        PORTAL_MAPPING,
        channel="web",
        external_id="w1",
        received_at=NOW,
        timezone="UTC",
        portal=True,
    )


def _whatsapp(name: str) -> InboundMessage:
    document = {"id": "1002", "filename": name, "mime_type": "application/pdf"}
    message = {"from": "6281234567890", "id": "wamid.X1", "type": "document", "document": document}
    payload = json.dumps({"message": message}).encode()
    return decode_whatsapp_message(payload, connector="wa", received_at=NOW)


def _json_document(name: str) -> InboundMessage:
    item = {"filename": name, "content_type": "application/pdf", "content": "JVBERg=="}
    payload = json.dumps({"channel": "web", "external_id": "j1", "attachments": [item]}).encode()
    return decode_json_document(payload, connector="files", received_at=NOW)


def _custom_connector(name: str) -> InboundMessage:
    """What a third-party connector might hand over: normalize() cleans it too."""
    inbound = InboundMessage(
        channel="chat",
        external_id="c1",
        attachments=[Attachment(filename=name, content_type="application/pdf", content=b"%PDF")],
    )
    normalized = normalize(inbound, connector="chat", received_at=NOW)
    return InboundMessage(channel="chat", external_id="c1", attachments=normalized.attachments)


DECODERS = {
    "email": _email,
    "web-json": _web_json,
    "web-multipart": _web_multipart,
    "whatsapp": _whatsapp,
    "json-document": _json_document,
    "custom-connector": _custom_connector,
}


@pytest.mark.parametrize("channel", sorted(DECODERS))
@pytest.mark.parametrize(("name", "expected"), HOSTILE)
def test_every_decoder_cleans_attachment_names(channel: str, name: str, expected: str) -> None:
    """E-mail, portal JSON and multipart, WhatsApp documents, ``.json`` documents and a
    custom connector's messages all give the same plain name for the same hostile one."""
    [attachment] = DECODERS[channel](name).attachments
    assert attachment.filename == expected


@pytest.mark.parametrize(
    "path",
    [
        "/2010-04-01/Accounts/AC1/Messages/MM1/Media/..%2F..%2Fetc%2Fpasswd",
        "/2010-04-01/Accounts/AC1/Messages/MM1/Media/%00.jpg",
        "/x/..\\..\\CON",
    ],
)
def test_twilio_media_names_never_come_from_a_hostile_url(path: str) -> None:
    """Twilio gives no filename: one is made of a media SID only, never of the URL's text."""
    fields = sms_fields(1) | {
        "NumMedia": "1",
        "MediaUrl0": "https://api.twilio.com" + path,
        "MediaContentType0": "image/jpeg",
    }
    [attachment] = decode_form(fields, connector="sms").attachments
    assert attachment.filename is None
    media_sid = "ME" + "0" * 32
    good = fields | {"MediaUrl0": f"https://api.twilio.com/2010-04-01/Media/{media_sid}"}
    [named] = decode_form(good, connector="sms").attachments
    assert named.filename == media_sid + ".jpg"


# -- through the store, on SQLite and PostgreSQL -----------------------------------------------


def test_stored_complaints_carry_only_clean_names(inbox: Inbox) -> None:
    """A ``.json`` document and a portal's own InboundMessage with hostile names are filed with
    clean names, and the raw payload keeps what was sent."""
    items = [
        {"filename": name, "content_type": "application/pdf", "content": "JVBERg=="}
        for name, _ in HOSTILE[:5]
    ]
    assert inbox.receive(raw_json("hostile-1", attachments=items)).outcome == "new"
    portal = InboundMessage(
        channel="web",
        external_id="hostile-2",
        text="Lampiran dari portal.",
        attachments=[Attachment(filename="..\\..\\boot.ini", content=b"x")],
    )
    assert inbox.receive_inbound(portal, connector="files").outcome == "new"
    first, second = sorted(inbox.complaints(), key=lambda c: c.id)
    assert [a.filename for a in first.attachments] == [expected for _, expected in HOSTILE[:5]]
    assert [a.filename for a in second.attachments] == ["boot.ini"]
    with inbox.store.transaction() as conn:
        names = list(conn.execute(sa.select(attachments.c.filename)).scalars())
    assert not any("/" in n or "\\" in n or n.startswith(".") for n in names)


@pytest.fixture
def portal(database_url: str) -> Iterator[tuple[Inbox, str]]:
    """A web connector (the portal) on the backend under test, served on loopback."""
    config = parse_config(
        {
            "database": {"url": database_url},
            "connectors": [{"name": "portal", "type": "web", "secret": SECRET}],
        }
    )
    with Inbox(config) as inbox, serve_wsgi(create_app(inbox)) as base_url:
        yield inbox, base_url


def test_portal_upload_with_a_traversal_name_is_filed_with_a_plain_name(
    portal: tuple[Inbox, str],
) -> None:
    """A signed multipart upload named ``../../etc/passwd`` is accepted and filed as
    ``passwd``; a JSON attachment named ``CON`` as ``_CON``."""
    inbox, base_url = portal
    prepared = requests.Request(
        "POST",
        "http://x",
        data={"message": "Foto jalan rusak"},
        files={"attachments": ("../../etc/passwd", b"\xff\xd8\xffjpeg", "image/jpeg")},
    ).prepare()
    body = bytes(prepared.body or b"")  # type: ignore[arg-type]
    signed = standard_webhooks_headers(SECRET, body, webhook_id="msg_up")
    answer = post_web(base_url, body, {"Content-Type": prepared.headers["Content-Type"], **signed})
    assert answer.status_code == 200, answer.text
    item = {"filename": "CON", "content_type": "application/pdf", "content": "JVBERg=="}
    body = json.dumps({"message": "Berkas", "attachments": [item]}).encode()
    signed = standard_webhooks_headers(SECRET, body, webhook_id="msg_con")
    assert (
        post_web(base_url, body, {"Content-Type": "application/json", **signed}).status_code == 200
    )
    names = sorted(a.filename or "" for c in inbox.complaints() for a in c.attachments)
    assert names == ["_CON", "passwd"]


# -- WhatsApp media ids and URLs ------------------------------------------------------------------

APP_SECRET, PNID, GRAPH_TOKEN = "rahasia-aplikasi-uji", "106540352242922", "EAAG-token-uji"
BAD_MEDIA_IDS = [
    "../../me/accounts",
    "123/../../x",
    "123?fields=access_token",
    "123#",
    "%2e%2e",
    "123%2F..",
    "123\n",
    "\uff11\uff12\uff13",  # full-width digits
    "",
    "12 3",
    "https://evil.example/x",
]


def _whatsapp_config(database_url: str, graph: str, **extra: Any) -> dict[str, Any]:
    connector = {
        "name": "wa",
        "type": "whatsapp-cloud",
        "app_secret": APP_SECRET,
        "verify_token": "verifikasi",
        "access_token": GRAPH_TOKEN,
        "phone_number_ids": [PNID],
        "graph_api_url": graph,
    }
    return {"database": {"url": database_url}, "connectors": [connector | extra]}


@pytest.fixture
def wa(database_url: str, recorder: Recorder) -> Iterator[Inbox]:
    """A WhatsApp Cloud connector whose Graph API is the recording server."""
    with Inbox(parse_config(_whatsapp_config(database_url, recorder.base))) as inbox:
        yield inbox


def _wa_connector(inbox: Inbox, graph: str, **extra: Any) -> WhatsAppCloudConnector:
    """A WhatsApp Cloud connector on ``inbox`` whose Graph API is at ``graph``."""
    options = _whatsapp_config("", graph, **extra)["connectors"][0]
    del options["name"], options["type"]
    connector = WhatsAppCloudConnector.from_options("wa", options, inbox.context)
    assert isinstance(connector, WhatsAppCloudConnector)
    return connector


@pytest.mark.parametrize("media_id", BAD_MEDIA_IDS)
def test_a_media_id_that_is_not_digits_makes_no_request(
    sqlite_inbox: Inbox, recorder: Recorder, media_id: str
) -> None:
    """Only digits make a Graph API media id; anything else is refused before any request."""
    connector = _wa_connector(sqlite_inbox, recorder.base)
    with pytest.raises(SkippableError, match="media id"):
        connector.fetch_media(MEDIA_SCHEME + media_id, max_bytes=10**6)
    assert recorder.seen == []


def _signed_document(media_id: str, filename: str) -> tuple[bytes, dict[str, str]]:
    document = {"id": media_id, "filename": filename, "mime_type": "application/pdf"}
    message = {
        "from": "6281234567890",
        "id": "wamid.HOSTILE1",
        "timestamp": "1796000000",
        "type": "document",
        "document": document | {"caption": "Surat permohonan"},
    }
    value = {"metadata": {"phone_number_id": PNID}, "messages": [message]}
    envelope = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
    }
    body = json.dumps(envelope).encode()
    signature = meta_signature(body, APP_SECRET)
    return body, {"Content-Type": "application/json", "X-Hub-Signature-256": signature}


def test_a_hostile_whatsapp_document_is_filed_and_its_download_refused(
    wa: Inbox, recorder: Recorder
) -> None:
    """A signed document whose id is a path and whose name is a traversal: the complaint is
    filed with a plain name, the attachment ends ``refused`` with a clear error, and the Graph
    API never hears of it."""
    body, headers = _signed_document("../../me/accounts?fields=access_token", "../../etc/passwd")
    with serve_wsgi(create_app(wa)) as base_url:
        answer = requests.post(f"{base_url}/webhooks/wa", data=body, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    [complaint] = wa.complaints()
    assert [a.filename for a in complaint.attachments] == ["passwd"]
    [result] = wa.fetch_media()
    assert result.status == "refused" and "media id" in (result.error or "")
    assert recorder.seen == []


@pytest.mark.parametrize(
    "returned",
    [
        "https://graph.facebook.com@evil.example/x",
        "https://lookaside.fbsbx.com@evil.example/x",
        "https://lookaside.fbsbx.com.evil.example/x",
        "https://evil.example/whatsapp_business/attachments/?mid=1",
        "http://lookaside.fbsbx.com/x",  # clear text
        "https://lookaside.fbsbx.com\\@evil.example/x",
        "https://lookaside.fbsbx.com /x",
        "{elsewhere}/download/1",  # another host (and port) on loopback
    ],
)
def test_a_media_url_off_the_allowed_hosts_is_never_requested(
    sqlite_inbox: Inbox, recorder: Recorder, elsewhere: Recorder, returned: str
) -> None:
    """The URL the Graph API answers must be https on an allowed host (or the configured Graph
    host): another host, user info or clear text is refused without a request to it."""
    recorder.json("/v21.0/1001", {"url": returned.format(elsewhere=elsewhere.base)})
    with pytest.raises(SkippableError, match="not on an allowed media host"):
        _wa_connector(sqlite_inbox, recorder.base).fetch_media(
            MEDIA_SCHEME + "1001", max_bytes=10**6
        )
    assert [s.path for s in recorder.seen] == ["/v21.0/1001"]
    assert elsewhere.seen == []


def test_redirects_take_the_token_to_no_other_host(
    sqlite_inbox: Inbox, recorder: Recorder, elsewhere: Recorder
) -> None:
    """A download redirected to another allowed host goes there without the bearer token; a
    redirect to a host that is not allowed is refused before any request is made to it."""
    alias = recorder.base.replace("127.0.0.1", "localhost")
    allowed = alias.removeprefix("http://")
    recorder.json("/v21.0/1001", {"url": f"{recorder.base}/download/1001"})
    recorder.json("/v21.0/1002", {"url": f"{recorder.base}/download/1002"})
    recorder.routes["/download/1001"] = ("302 Found", [("Location", f"{alias}/cdn/1001")], b"")
    recorder.routes["/cdn/1001"] = ("200 OK", [("Content-Type", "image/jpeg")], b"\xff\xd8\xff")
    recorder.routes["/download/1002"] = (
        "307 Temporary Redirect",
        [("Location", f"{elsewhere.base}/cdn/1002")],
        b"",
    )
    connector = _wa_connector(sqlite_inbox, recorder.base, media_hosts=[allowed])
    media = connector.fetch_media(MEDIA_SCHEME + "1001", max_bytes=10**6)
    with pytest.raises(SkippableError, match="redirected to a host that is not allowed"):
        connector.fetch_media(MEDIA_SCHEME + "1002", max_bytes=10**6)
    assert media.content == b"\xff\xd8\xff"
    bearer = f"Bearer {GRAPH_TOKEN}"
    assert [(s.path, s.authorization) for s in recorder.seen] == [
        ("/v21.0/1001", bearer),
        ("/download/1001", bearer),
        ("/cdn/1001", None),  # another host: no token
        ("/v21.0/1002", bearer),
        ("/download/1002", bearer),
    ]
    assert elsewhere.seen == []


# -- Twilio media URLs ---------------------------------------------------------------------------

MESSAGE_SID, MEDIA_SID = sid(7, "MM"), sid(7, "ME")
MEDIA_PATH = f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{MESSAGE_SID}/Media/{MEDIA_SID}"
BAD_TWILIO_URLS = [
    "{base}" + f"{MEDIA_PATH}/../../../Messages.json",
    "{base}" + f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json",
    "{base}" + f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{MESSAGE_SID}/Media.json",
    "{base}" + f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{MESSAGE_SID}/Media/%2e%2e/%2e%2e",
    "{base}" + f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{MESSAGE_SID}/Media/..",
    "{base}" + f"{MEDIA_PATH}?PageSize=1000",
    "{base}" + f"{MEDIA_PATH}#",
    "{base}" + f"{MEDIA_PATH}.json",
    "{base}" + f"/2010-04-01/Accounts/{'AC' + '00' * 16}/Messages/{MESSAGE_SID}/Media/{MEDIA_SID}",
    "{base}" + f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{MESSAGE_SID}/Media/{MEDIA_SID}\n",
    "{base}" + f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{MESSAGE_SID}/Media/{MEDIA_SID}\\..\\x",
    "http://api.twilio.com@{host}" + MEDIA_PATH,  # user info: our host in name only
    "https://evil.example" + MEDIA_PATH,
    "ftp://{host}" + MEDIA_PATH,
]


@pytest.mark.parametrize("template", BAD_TWILIO_URLS)
def test_twilio_media_urls_off_our_media_path_make_no_request(
    sqlite_inbox: Inbox, recorder: Recorder, template: str
) -> None:
    """Only ``/2010-04-01/Accounts/<ours>/Messages/<sid>/Media/<sid>`` on the API host gets
    our credentials; any other path, query, escape, account or host is refused unrequested."""
    connector = add_twilio(sqlite_inbox, api_base_url=recorder.base)
    url = template.format(base=recorder.base, host=recorder.base.removeprefix("http://"))
    with pytest.raises(SkippableError, match="not on an allowed Twilio API"):
        connector.fetch_media(url, max_bytes=10**6)
    assert recorder.seen == []


def test_a_hostile_twilio_media_url_is_filed_and_its_download_refused(
    inbox: Inbox, recorder: Recorder
) -> None:
    """A signed MMS whose MediaUrl leaves our account's media is filed; its attachment ends
    ``refused`` with a clear error and the API server gets no request; a proper URL is
    fetched with our credentials."""
    add_twilio(inbox, api_base_url=recorder.base, ack="outbox")
    assert isinstance(inbox.connector("sms"), TwilioConnector)
    recorder.routes[MEDIA_PATH] = ("200 OK", [("Content-Type", "image/jpeg")], b"\xff\xd8\xff")
    hostile = f"{recorder.base}{MEDIA_PATH}/../../../../Messages.json?PageSize=1000"
    fields = sms_fields(7, "Foto pungli terlampir.", NumMedia="2")
    fields |= {"MediaUrl0": hostile, "MediaContentType0": "image/jpeg"}
    fields |= {"MediaUrl1": recorder.base + MEDIA_PATH, "MediaContentType1": "image/jpeg"}
    with serve_wsgi(create_app(inbox)) as base_url:
        assert post_twilio(base_url, fields).status_code == 200
    results = sorted(inbox.fetch_media(), key=lambda r: r.attachment_id)
    assert [r.status for r in results] == ["refused", "stored"]
    assert "not on an allowed Twilio API path" in (results[0].error or "")
    basic = "Basic " + base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
    assert recorder.seen == [Seen(recorder.base.removeprefix("http://"), MEDIA_PATH, "", basic)]
