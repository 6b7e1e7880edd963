"""The contract kit fails broken connectors, with a message that says what is wrong.

Each case runs the kit (``omnichannel.testing``) on a deliberately broken copy of the memory
connector in a separate pytest run, and reads its report.
"""

from __future__ import annotations

import textwrap
from xml.etree import ElementTree

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestAssertRewriteWarning")

HEADER = """
import json, logging, uuid
from pathlib import Path
from typing import Any

from connectors import memory
from connectors.memory import MemoryConnector
from omnichannel.registry import register
from omnichannel.testing import DecodeCase, PollingContract, WebhookCase, WebhookContract
from omnichannel.webhook import WebhookRequest, signing_key, standard_signature

SECRET = "whsec_YnJva2VuLWNvbm5lY3Rvci1zZWNyZXQ="

def doc(external_id, text):
    return json.dumps({"channel": "sms", "external_id": external_id, "text": text}).encode()

class Contract(WebhookContract, PollingContract):
    connector_type = "broken-memory"
    options = {"secret": SECRET}
    cases = [DecodeCase("sms", doc("m-1", "Jalan rusak parah."), {"text": "Jalan rusak parah."})]
    webhook_cases = [WebhookCase("sms", doc("w-1", "Lampu jalan padam."))]
    poll_items = [doc("p-1", "Saluran tersumbat."), doc("p-2", "KTP lambat.")]

    def sign(self, request, *, options, now):
        wid, ts = "msg_" + uuid.uuid4().hex, str(int(now))
        sig = standard_signature(signing_key(options["secret"]), wid, ts, request.body)
        headers = {**request.headers, "webhook-id": wid, "webhook-timestamp": ts,
                   "webhook-signature": sig}
        return WebhookRequest.build(request.method, request.url, headers, request.body)

    def setup_source(self, tmp_path):
        self.queue = "q-" + uuid.uuid4().hex
        return {"queue": self.queue}

    def deliver(self, item):
        memory.put(self.queue, item)
"""

BROKEN = {
    "accepts_every_signature": (
        """
class Broken(MemoryConnector):
    type = "broken-memory"
    def verify(self, request):
        pass
""",
        "not 403: the connector accepts requests it cannot have received from the provider",
    ),
    "drops_external_id": (
        """
class Broken(MemoryConnector):
    type = "broken-memory"
    def decode(self, raw):
        message = super().decode(raw)
        message.external_id = ""
        return message
    def _raw(self, payload):
        return super()._raw(payload).model_copy(update={"external_id": uuid.uuid4().hex})
""",
        "external id",
    ),
    "logs_its_secret": (
        """
log = logging.getLogger("connectors.broken")
class Broken(MemoryConnector):
    type = "broken-memory"
    def verify(self, request):
        log.debug("verifying with %s", self.options.secret.get_secret_value())
        super().verify(request)
""",
        "secret leaked: a secret option value appears in the log record of 'connectors.broken'",
    ),
    "acks_before_commit": (
        """
class Broken(MemoryConnector):
    type = "broken-memory"
    def fetch(self, cursor, *, since=None):
        for batch in super().fetch(cursor, since=since):
            self.ack(batch.messages)
            yield batch
""",
        "ack was called",
    ),
    "fetches_again_from_its_cursor": (
        """
class Broken(MemoryConnector):
    type = "broken-memory"
    def fetch(self, cursor, *, since=None):
        yield from super().fetch(None, since=since)
""",
        "a fetch from the returned cursor gave 1 message(s) again",
    ),
    "plain_str_secret": (
        """
from connectors.memory import MemoryOptions
class BrokenOptions(MemoryOptions):
    api_token: str = "x"
class Broken(MemoryConnector):
    type = "broken-memory"
    Options = BrokenOptions
""",
        "option 'api_token' looks like a secret but is not typed SecretStr",
    ),
}


def kit_report(pytester: pytest.Pytester) -> dict[str, list[str]]:
    """Run the kit once over every broken copy (and a sound one): failure messages by class."""
    parts = [HEADER]
    for name, (broken, _) in [*sorted(BROKEN.items()), ("sound", (SOUND, ""))]:
        code = textwrap.dedent(broken).replace("class Broken(", f"class Broken_{name}(")
        code = code.replace('"broken-memory"', f'"broken-{name}"')
        parts.append(code)
        parts.append(
            f'register("broken-{name}", Broken_{name})\n\n'
            f"class Test_{name}(Contract):\n    connector_type = 'broken-{name}'\n"
        )
    pytester.makepyfile(test_broken="\n".join(parts))
    report = pytester.path / "report.xml"
    pytester.runpytest_subprocess(
        "-q", "-p", "no:cacheprovider", "-W", "ignore", f"--junitxml={report}"
    )
    failures: dict[str, list[str]] = {}
    for case in ElementTree.parse(report).iter("testcase"):
        name = case.get("classname", "").rsplit(".Test_", 1)[-1]
        failures.setdefault(name, [])
        for failure in case.iter("failure"):
            failures[name].append(failure.get("message", "") + (failure.text or ""))
    return failures


SOUND = 'class Broken(MemoryConnector):\n    type = "broken-memory"\n'


def test_broken_connectors_fail_the_kit_saying_why(pytester: pytest.Pytester) -> None:
    """A connector broken in one way fails the kit, and a failure message names the fault;
    the unbroken connector passes the same run (so the failures are the faults')."""
    failures = kit_report(pytester)
    assert failures.get("sound") == [], failures.get("sound")
    for name, (_, message) in BROKEN.items():
        assert failures.get(name), f"{name}: the kit passed a broken connector"
        assert any(message in text for text in failures[name]), (name, failures[name][:3])
