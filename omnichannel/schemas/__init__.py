"""JSON Schemas generated from the code (``python -m omnichannel.schemas`` rewrites them).

``complaint.schema.json`` describes one line of ``omnichannel complaints export --format
jsonl`` and the body the webhook forwarder sends; a test checks that the shipped file is what
the code generates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode

from omnichannel.schema import Complaint, InboundMessage

__all__ = ["SCHEMAS", "generate", "main"]

FOLDER = Path(__file__).resolve().parent
# name -> (model, mode): exports are what we write, inbound documents are what we read
SCHEMAS: dict[str, tuple[type[BaseModel], JsonSchemaMode]] = {
    "complaint.schema.json": (Complaint, "serialization"),
    "inbound-message.schema.json": (InboundMessage, "validation"),
}


def generate(name: str) -> dict[str, Any]:
    model, mode = SCHEMAS[name]
    schema = model.model_json_schema(mode=mode)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://omnichannel.invalid/schemas/{name}",
        **schema,
    }


def render(name: str) -> str:
    return json.dumps(generate(name), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def main() -> None:
    for name in SCHEMAS:
        (FOLDER / name).write_text(render(name), encoding="utf-8")
        print(f"wrote {FOLDER / name}")
