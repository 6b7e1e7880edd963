"""The memory connector, the reference implementation, proves the whole contract."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from connectors import memory
from omnichannel.testing import DecodeCase, PollingContract, WebhookCase, WebhookContract
from omnichannel.webhook import WebhookRequest, signing_key, standard_signature

SECRET = "whsec_bWVtb3J5LWNvbnRyYWN0LXNlY3JldA=="


def document(external_id: str, text: str, **extra: Any) -> bytes:
    return json.dumps(
        {"channel": "sms", "external_id": external_id, "text": text, **extra}
    ).encode()


class TestMemoryContract(WebhookContract, PollingContract):
    connector_type = "memory"
    options: ClassVar[dict[str, Any]] = {"secret": SECRET}
    replay_tolerance = 300
    cases: ClassVar[list[DecodeCase]] = [
        DecodeCase(
            "sms",
            document("m-1", "Jalan di depan pasar berlubang.", sender={"phone": "0812 3456 7890"}),
            {"channel": "sms", "text": "Jalan di depan pasar berlubang."},
            external_id="m-1",
        ),
    ]
    webhook_cases: ClassVar[list[WebhookCase]] = [
        WebhookCase("sms", document("w-1", "Lampu jalan padam sejak Senin.")),
        WebhookCase("whatsapp", document("w-2", "Izin usaha saya belum terbit.")),
    ]
    poll_items: ClassVar[list[bytes]] = [
        document("p-1", "Saluran air tersumbat di RT 03."),
        document("p-2", "Pelayanan KTP sangat lambat."),
        document("p-3", "Jembatan desa retak."),
    ]

    def sign(
        self, request: WebhookRequest, *, options: Mapping[str, Any], now: float
    ) -> WebhookRequest:
        webhook_id, timestamp = f"msg_{uuid.uuid4().hex}", str(int(now))
        key = signing_key(options["secret"])
        signature = standard_signature(key, webhook_id, timestamp, request.body)
        headers = {
            **request.headers,
            "webhook-id": webhook_id,
            "webhook-timestamp": timestamp,
            "webhook-signature": signature,
        }
        return WebhookRequest.build(request.method, request.url, headers, request.body)

    def setup_source(self, tmp_path: Path) -> dict[str, Any]:
        self.queue = f"contract-{uuid.uuid4().hex}"
        return {"queue": self.queue}

    def deliver(self, item: Any) -> None:
        memory.put(self.queue, item)

    def teardown_source(self) -> None:
        memory.clear(self.queue)
