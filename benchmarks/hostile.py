"""Hostile-input benchmark: decode time and memory of hostile bodies against normal ones.

Each hostile body below is decoded the way the filing worker (or, for the web connector, the
request) decodes it, in a fresh child process, and measured three ways in the same run:

- **time**: wall time of the decode (best of ``--repeat`` children, no tracing);
- **vs normal**: that time divided by the time for a *normal* body of the same channel and the
  same size (an e-mail with one attachment, a form with one long field, a multipart form with
  one file, one long WhatsApp message), measured in the same run: the cost of the shape;
- **peak / input**: the peak of Python allocations during the decode (``tracemalloc``, its own
  child run) divided by the input size.

The **work** column counts what was done (MIME parts begun, boundary checks, attachments kept,
bytes stored); **result** is what the message became: filed with its flags, or refused (the
answer a web request, or the quarantine a stored payload, would get). With ``--stdlib`` the
e-mail and multipart rows also time the standard library's ``email`` parser alone on the same
body (what decoding cost before the limits), so the two can be compared within one run.

A last row stores, decodes and files a large mail through ``Inbox.receive`` on SQLite (or
``--database-url``) and reports the process's peak resident memory over the mail's size.

Run from the repository root::

    .venv/bin/python benchmarks/hostile.py                 # every case, best of 3 (about 2 min)
    .venv/bin/python benchmarks/hostile.py --stdlib        # + the standard library's parse
    .venv/bin/python benchmarks/hostile.py --cases email-parts,web-fields --repeat 1 --json

How to read it: seconds depend on the machine and its load (in the header); the ratios (vs
normal, peak / input) are what to compare across commits. Progress goes to stderr, the table
(or one JSON object with ``--json``) to stdout.
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import os
import platform
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import HTTP, compat32
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from normalizer import mime
from normalizer.email import decode_email
from normalizer.normalize import normalize
from normalizer.twilio import decode_twilio
from normalizer.web import PORTAL_MAPPING, FieldError, map_payload, parse_body
from normalizer.whatsapp import split_webhook
from omnichannel.errors import DecodeError

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data; boundary=pisah"
TEXT = b"Jalan di depan kantor desa rusak parah, mohon segera diperbaiki."
PNID = "106540352242922"


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- bodies ------------------------------------------------------------------------------------


def mail(parts: list[bytes], boundary: bytes = b"BB", head: bytes = b"") -> bytes:
    top = (
        b"From: Warga <warga@example.id>\r\nTo: pengaduan@example.go.id\r\nSubject: Lapor\r\n"
        b"Message-ID: <uji@example.id>\r\nMIME-Version: 1.0\r\n"
        + head
        + b"Content-Type: multipart/mixed; boundary="
        + boundary
        + b"\r\n\r\n"
    )
    body = b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts)
    return top + body + b"--" + boundary + b"--\r\n"


def text_part(text: bytes = TEXT, kind: bytes = b"text/plain") -> bytes:
    return b"Content-Type: " + kind + b"; charset=utf-8\r\n\r\n" + text


def file_part(n: int, content: bytes) -> bytes:
    return (
        b"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment; filename=f%d.pdf\r\n\r\n"
        % n
        + base64.encodebytes(content).replace(b"\n", b"\r\n").rstrip(b"\r\n")
    )


def nested(depth: int, inner: bytes) -> bytes:
    opening = b"".join(
        b"--B%d\r\nContent-Type: multipart/mixed; boundary=B%d\r\n\r\n" % (level - 1, level)
        for level in range(1, depth)
    )
    closing = b"".join(b"--B%d--\r\n" % level for level in reversed(range(depth)))
    innermost = b"--B%d\r\nContent-Type: text/plain\r\n\r\n" % (depth - 1) + inner
    top = mail([text_part()], boundary=b"B0")[: -len(b"--B0--\r\n")]
    return top + opening + innermost + closing


def multipart(fields: list[tuple[bytes, bytes, bytes | None]]) -> bytes:
    out = []
    for name, value, filename in fields:
        extra = b'; filename="' + filename + b'"\r\nContent-Type: image/jpeg' if filename else b""
        out.append(b'--pisah\r\nContent-Disposition: form-data; name="' + name + b'"' + extra)
        out.append(b"\r\n\r\n" + value + b"\r\n")
    return b"".join(out) + b"--pisah--\r\n"


def twilio_form(**extra: str) -> dict[str, str]:
    return {
        "MessageSid": "SM" + "ab" * 16,
        "AccountSid": "AC" + "cd" * 16,
        "From": "+6281234567890",
        "To": "+6281100000001",
        "Body": TEXT.decode(),
        "NumMedia": "0",
        "SmsStatus": "received",
    } | extra


def notification(messages: int, contacts: int, text: str = TEXT.decode()) -> bytes:
    numbers = [f"62812{n:07d}" for n in range(max(messages, contacts))]
    value = {
        "metadata": {"phone_number_id": PNID},
        "contacts": [{"wa_id": wa, "profile": {"name": "Warga"}} for wa in numbers[:contacts]],
        "messages": [
            {
                "from": wa,
                "id": f"wamid.{wa}",
                "timestamp": "1764468000",
                "type": "text",
                "text": {"body": text},
            }
            for wa in numbers[:messages]
        ],
    }
    entry = {"id": "1", "changes": [{"field": "messages", "value": value}]}
    return json.dumps({"object": "whatsapp_business_account", "entry": [entry]}).encode()


def _pad(size: int, used: int) -> int:
    return max(1, size - used)


# what a normal body of each channel and of a given size looks like
def normal_email(size: int) -> bytes:
    return mail([text_part(), file_part(1, os.urandom(_pad(size, 600) * 3 // 4))])


def normal_form(size: int) -> bytes:
    return urlencode({"message": "x" * _pad(size, 10), "phone": "081234567890"}).encode()


def normal_multipart(size: int) -> bytes:
    photo = b"\xff\xd8\xff\xe0" + os.urandom(_pad(size, 300))
    return multipart([(b"message", TEXT, None), (b"attachments", photo, b"a.jpg")])


def normal_twilio(size: int) -> bytes:
    return urlencode(twilio_form(Body="x" * _pad(size, 200))).encode()


def normal_whatsapp(size: int) -> bytes:
    return notification(1, 1, "x" * _pad(size, 300))


# -- decoding as the pipeline does it ----------------------------------------------------------


def decode_mail(payload: bytes) -> str:
    message = decode_email(payload, connector="files", external_id="x")
    flags = {k: v for k, v in message.flags.items() if k.endswith(("truncated", "omitted"))}
    return f"filed: {len(message.attachments)} att., {len(message.text or '')} chars {flags or ''}"


def decode_web(content_type: str) -> Callable[[bytes], str]:
    def run(payload: bytes) -> str:
        try:
            data = parse_body(content_type, payload)
            message = map_payload(
                data,
                PORTAL_MAPPING,
                channel="web",
                external_id="x",
                received_at=datetime.now(UTC),
                timezone="Asia/Makassar",
                required=("text",),
                portal=True,
            )
        except FieldError as exc:
            return f"refused 400: {exc.field}: {exc.problem}"
        return f"filed: {len(message.attachments)} att., {len(message.text or '')} chars"

    return run


def decode_sms(payload: bytes) -> str:
    """Decoded and normalized, as the worker files it (the attachment limit is applied there,
    for every channel)."""
    try:
        inbound = decode_twilio(payload, FORM, connector="sms")
    except DecodeError as exc:
        return f"refused 400: {exc}"
    message = normalize(inbound, connector="sms", received_at=datetime.now(UTC))
    flags = {k: v for k, v in message.flags.items() if k.endswith("omitted")}
    return f"filed: {len(message.attachments)} att. {flags or ''}"


def split_meta(payload: bytes) -> str:
    """What the whatsapp-cloud connector does in the request: one stored payload a message."""
    envelope = json.loads(payload)
    found, _ = split_webhook(envelope, {PNID})
    stored = sum(len(json.dumps(one, ensure_ascii=False).encode()) for _, one in found)
    contacts = [
        change["value"].get("contacts", []) for e in envelope["entry"] for change in e["changes"]
    ]
    every = len(found) * sum(len(json.dumps(c).encode()) for c in contacts)  # (all in each)
    return (
        f"stored: {len(found)} messages, {stored / len(payload):.2f}x the body "
        f"(every contact in every message: {every / len(payload):,.0f}x)"
    )


def mime_work(payload: bytes, head: bytes = b"") -> str:
    parsed = mime.parse(payload, HTTP if head else compat32, head=head)
    cut = f", cut: {parsed.truncated}" if parsed.truncated else ""
    hidden = f", {parsed.hidden / MIB:.1f} MiB kept out" if parsed.hidden else ""
    return f"{parsed.parts} parts, {parsed.checks} checks{hidden}{cut}"


# -- cases -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    describe: str
    build: Callable[[float], bytes]
    decode: Callable[[bytes], str]
    normal: Callable[[int], bytes]
    stdlib: str | None = None
    """``email`` or ``multipart``: how ``--stdlib`` parses the same body."""


def _scaled(scale: float, n: int) -> int:
    return max(1, int(n * scale))


CASES = [
    Case(
        "email-attachment",
        "e-mail, one 37 MiB base64 attachment (50 MiB)",
        lambda s: normal_email(_scaled(s, 50 * MIB)),
        decode_mail,
        normal_email,
        "email",
    ),
    Case(
        "email-parts",
        "e-mail, 50,000 attachment parts",
        lambda s: mail([text_part()] + [file_part(n, b"xx") for n in range(_scaled(s, 50_000))]),
        decode_mail,
        normal_email,
        "email",
    ),
    Case(
        "email-nested",
        "e-mail, 500 nested multiparts over 100,000 lines",
        lambda s: nested(500, b"baris teks\r\n" * _scaled(s, 100_000)),
        decode_mail,
        normal_email,
        "email",
    ),
    Case(
        "email-dashes",
        "e-mail, 400,000 '--x' lines in 30 nested multiparts",
        lambda s: nested(30, b"--x\r\n" * _scaled(s, 400_000)),
        decode_mail,
        normal_email,
        "email",
    ),
    Case(
        "email-html",
        "e-mail, 5 MiB of HTML and no plain text",
        lambda s: mail([text_part(b"<p>Jalan rusak.</p>" * _scaled(s, 276_000), b"text/html")]),
        decode_mail,
        normal_email,
    ),
    Case(
        "web-fields",
        "web form, 50,000 urlencoded fields",
        lambda s: urlencode([(f"f{n}", "x") for n in range(_scaled(s, 50_000))]).encode(),
        decode_web(FORM),
        normal_form,
    ),
    Case(
        "web-parts",
        "web multipart form, 20,000 parts",
        lambda s: multipart([(b"message", TEXT, None)] + [(b"f", b"x", None)] * _scaled(s, 20_000)),
        decode_web(MULTIPART),
        normal_multipart,
        "multipart",
    ),
    Case(
        "web-file",
        "web multipart form, one 8 MiB file",
        lambda s: normal_multipart(_scaled(s, 8 * MIB)),
        decode_web(MULTIPART),
        normal_multipart,
        "multipart",
    ),
    Case(
        "twilio-fields",
        "Twilio form, 50,000 fields",
        lambda s: urlencode(
            twilio_form() | {f"X{n}": "y" for n in range(_scaled(s, 50_000))}
        ).encode(),
        decode_sms,
        normal_twilio,
    ),
    Case(
        "twilio-nummedia",
        "Twilio form, NumMedia=100000 and 500 MediaUrlN",
        lambda s: urlencode(
            twilio_form(NumMedia="100000")
            | {f"MediaUrl{n}": f"https://api.twilio.com/M/ME{n}" for n in range(500)}
        ).encode(),
        decode_sms,
        normal_twilio,
    ),
    Case(
        "whatsapp-batch",
        "WhatsApp, 20,000 messages and 20,000 contacts",
        lambda s: notification(_scaled(s, 20_000), _scaled(s, 20_000)),
        split_meta,
        normal_whatsapp,
    ),
]
BY_NAME = {case.name: case for case in CASES}


# -- one measurement, in a child process -------------------------------------------------------


def stdlib_parse(kind: str, payload: bytes) -> str:
    """The standard library's parser alone on the body, every leaf transfer-decoded."""
    if kind == "multipart":
        head = f"Content-Type: {MULTIPART}\r\n\r\n".encode()
        message = BytesParser(policy=HTTP).parsebytes(head + payload)
    else:
        message = BytesParser(policy=compat32).parsebytes(payload)
    leaves = [part.get_payload(decode=True) for part in message.walk() if not part.is_multipart()]
    return f"{len(leaves)} leaves"


def child(spec: dict[str, Any]) -> dict[str, Any]:
    case = BY_NAME[spec["case"]]
    kind = spec["kind"]
    if kind == "normal":
        payload, run = case.normal(spec["size"]), case.decode
    else:
        payload = case.build(spec["scale"])
        run = case.decode if kind == "hostile" else lambda p: stdlib_parse(str(case.stdlib), p)
    gc.collect()
    if spec["measure"] == "memory":
        tracemalloc.start()
    started = time.perf_counter()
    result = run(payload)
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] if spec["measure"] == "memory" else None
    tracemalloc.stop()
    out = {"input": len(payload), "seconds": seconds, "peak": peak, "result": result}
    if spec["measure"] == "memory" and kind == "hostile" and case.stdlib:
        head = f"Content-Type: {MULTIPART}\r\n\r\n".encode() if case.stdlib == "multipart" else b""
        out["work"] = mime_work(payload, head)
    return out


_PROC_STATUS = Path("/proc/self/status")


def _status_bytes(field: str) -> int:
    for line in _PROC_STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def receive_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Store, decode and file one large mail through ``Inbox.receive``; the peak resident
    memory above what the process held with the mail in hand (``VmHWM``, reset first)."""
    from omnichannel.config import default_config
    from omnichannel.inbox import Inbox
    from omnichannel.schema import RawMessage

    inbox = Inbox(default_config(url=spec["url"]))
    payload = normal_email(_scaled(spec["scale"], 50 * MIB))
    raw = RawMessage(
        connector="files",
        external_id="besar",
        received_at=datetime.now(UTC),
        content_type="message/rfc822",
        payload=payload,
    )
    gc.collect()
    before = _status_bytes("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    started = time.perf_counter()
    result = inbox.receive(raw)
    seconds = time.perf_counter() - started
    peak = _status_bytes("VmHWM") - before
    inbox.close()
    return {"input": len(payload), "seconds": seconds, "peak": peak, "result": result.outcome.value}


def spawn(spec: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise SystemExit(f"child {spec} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def best(spec: dict[str, Any], repeat: int) -> dict[str, Any]:
    runs = [spawn(spec | {"measure": "time"}) for _ in range(repeat)]
    return min(runs, key=lambda run: float(run["seconds"]))


# -- the run -----------------------------------------------------------------------------------


def measure(case: Case, scale: float, repeat: int, stdlib: bool) -> dict[str, Any]:
    spec = {"case": case.name, "scale": scale}
    hostile = best(spec | {"kind": "hostile"}, repeat)
    memory = spawn(spec | {"kind": "hostile", "measure": "memory"})
    normal = best(spec | {"kind": "normal", "size": hostile["input"]}, repeat)
    row = {
        "case": case.name,
        "describe": case.describe,
        "input_bytes": hostile["input"],
        "seconds": round(hostile["seconds"], 4),
        "normal_seconds": round(normal["seconds"], 4),
        "vs_normal": round(hostile["seconds"] / max(normal["seconds"], 1e-6), 2),
        "peak_over_input": round(memory["peak"] / hostile["input"], 2),
        "work": memory.get("work", ""),
        "result": hostile["result"],
    }
    if stdlib and case.stdlib:
        theirs = best(spec | {"kind": "stdlib"}, 1)
        theirs_memory = spawn(spec | {"kind": "stdlib", "measure": "memory"})
        row["stdlib_seconds"] = round(theirs["seconds"], 4)
        row["stdlib_peak_over_input"] = round(theirs_memory["peak"] / hostile["input"], 2)
    figures = f"x{row['vs_normal']} normal, peak x{row['peak_over_input']}"
    progress(f"  {case.name}: {row['seconds']} s, {figures}")
    return row


def receive_row(url: str, scale: float) -> dict[str, Any]:
    figures = spawn({"receive": True, "url": url, "scale": scale})
    backend = url.split(":", 1)[0].split("+", 1)[0]
    return {
        "case": f"receive-{backend}",
        "describe": f"store, decode and file a 50 MiB mail (Inbox.receive, {backend})",
        "input_bytes": figures["input"],
        "seconds": round(figures["seconds"], 3),
        "peak_rss_over_input": round(figures["peak"] / figures["input"], 2),
        "result": figures["result"],
    }


def _size(count: int) -> str:
    return f"{count / MIB:.1f} MiB" if count >= MIB else f"{count / 1024:.0f} KiB"


def table(rows: list[dict[str, Any]], header: str) -> str:
    lines = [header, ""]
    lines.append(
        "| case | input | decode | vs normal | peak / input | stdlib parse | work | result |"
    )
    lines.append("|---|---|---|---|---|---|---|---|")
    for row in rows:
        if "peak_rss_over_input" in row:
            continue
        stdlib = (
            f"{row['stdlib_seconds']} s, x{row['stdlib_peak_over_input']}"
            if "stdlib_seconds" in row
            else ""
        )
        lines.append(
            f"| {row['describe']} | {_size(row['input_bytes'])} | {row['seconds']:.3f} s "
            f"| {row['vs_normal']} | {row['peak_over_input']} | {stdlib} | {row['work']} "
            f"| {row['result']} |"
        )
    for row in rows:
        if "peak_rss_over_input" in row:
            lines.append(
                f"\n{row['describe']}: {row['seconds']} s, peak resident memory "
                f"{row['peak_rss_over_input']} x the mail ({row['result']})"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--cases", default=",".join(BY_NAME), help="comma-separated case names")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every hostile size")
    parser.add_argument("--repeat", type=int, default=3, help="timed children per body; best kept")
    parser.add_argument("--stdlib", action="store_true", help="also time the stdlib's parser")
    parser.add_argument("--database-url", help="also receive the large mail on this database")
    parser.add_argument("--no-receive", action="store_true", help="skip the Inbox.receive rows")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(receive_child(spec) if spec.get("receive") else child(spec)))
        return 0
    unknown = [name for name in args.cases.split(",") if name not in BY_NAME]
    if unknown:
        parser.error(f"unknown cases {unknown}; known: {list(BY_NAME)}")
    header = (
        f"{datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, "
        f"Python {platform.python_version()}, scale {args.scale}, best of {args.repeat}"
    )
    progress(header)
    rows = [
        measure(BY_NAME[name], args.scale, args.repeat, args.stdlib)
        for name in args.cases.split(",")
    ]
    if not args.no_receive and Path("/proc/self/clear_refs").exists():
        with_temp = Path(os.environ.get("TMPDIR", "/tmp")) / f"hostile-{os.getpid()}.db"
        try:
            rows.append(receive_row(f"sqlite:///{with_temp}", args.scale))
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{with_temp}{suffix}").unlink(missing_ok=True)
        if args.database_url:
            rows.append(receive_row(args.database_url, args.scale))
    if args.json:
        print(json.dumps({"header": header, "rows": rows}))
    else:
        print(table(rows, header))
    return 0


if __name__ == "__main__":
    sys.exit(main())
