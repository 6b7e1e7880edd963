"""Score dedupe against the labelled evaluation set: merge precision and recall, cluster F1.

``python -m tests.dedupe_eval.evaluate [messages.jsonl|holdout.jsonl] [--errors|--sweep]``
files every message of the set, in time order, through the real filing path (an ``Inbox`` on a
fresh SQLite database, the default configuration), and compares what it made with the labels:

- **merge** precision and recall over pairs of messages: a pair is predicted together when the
  two messages ended in one complaint, and is together in truth when they share ``complaint``;
- **cluster** F1 over pairs of messages: predicted together when their complaints are one or
  share a ``cluster_id``, together in truth when they share ``matter``. (B-cubed F1 is printed
  too.)
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from omnichannel import Inbox
from omnichannel.schema import InboundMessage, Sender

FOLDER = Path(__file__).resolve().parent


def load(name: str = "messages.jsonl") -> list[dict[str, Any]]:
    """The labelled messages of one file, in the order they arrive."""
    lines = (FOLDER / name).read_text(encoding="utf-8").splitlines()
    items = [json.loads(line) for line in lines if line.strip()]
    return sorted(items, key=lambda m: (datetime.fromisoformat(m["at"]), m["id"]))


def inbound(item: dict[str, Any]) -> InboundMessage:
    sender = item["sender"]
    return InboundMessage(
        channel=item["channel"],
        external_id=item["id"],
        received_at=datetime.fromisoformat(item["at"]),
        sender=Sender(
            name=sender.get("name"), email=sender.get("email"), phone=sender.get("phone")
        ),
        subject=item.get("subject"),
        text=item["text"],
    )


@dataclass
class Filed:
    """What filing made of each message: its complaint, and that complaint's cluster."""

    complaint: dict[str, int]
    group: dict[str, str]
    outcome: dict[str, str]


def run(items: list[dict[str, Any]], database_url: str | None = None, **settings: Any) -> Filed:
    """File ``items`` through an Inbox (a fresh SQLite database unless given one; ``settings``
    override the filing settings, e.g. ``merge_threshold``)."""
    with tempfile.TemporaryDirectory() as folder:
        url = database_url or f"sqlite:///{folder}/eval.db"
        inbox = Inbox(database_url=url)
        inbox.settings = dataclasses.replace(inbox.settings, **settings)
        try:
            complaint, outcome = {}, {}
            for item in items:
                result = inbox.receive_inbound(inbound(item), connector="files")
                assert result.complaint_id is not None, (item["id"], result)
                complaint[item["id"]] = result.complaint_id
                outcome[item["id"]] = result.outcome.value
            clusters = {c.id: c.cluster_id for c in inbox.iter_complaints()}
        finally:
            inbox.close()
    group = {m: clusters.get(c) or f"complaint:{c}" for m, c in complaint.items()}
    return Filed(complaint, group, outcome)


def _pairs(labels: dict[str, Any]) -> set[tuple[str, str]]:
    by: dict[Any, list[str]] = {}
    for key, value in labels.items():
        by.setdefault(value, []).append(key)
    return {
        (a, b) if a < b else (b, a)
        for members in by.values()
        for a, b in itertools.combinations(members, 2)
    }


def pair_scores(predicted: dict[str, Any], truth: dict[str, Any]) -> tuple[float, float, float]:
    """Precision, recall and F1 over the pairs of items put together."""
    p, t = _pairs(predicted), _pairs(truth)
    hits = len(p & t)
    precision = hits / len(p) if p else 1.0
    recall = hits / len(t) if t else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def bcubed_f1(predicted: dict[str, Any], truth: dict[str, Any]) -> float:
    def members(labels: dict[str, Any]) -> dict[str, set[str]]:
        by: dict[Any, set[str]] = {}
        for key, value in labels.items():
            by.setdefault(value, set()).add(key)
        return {key: by[value] for key, value in labels.items()}

    mp, mt = members(predicted), members(truth)
    precision = sum(len(mp[k] & mt[k]) / len(mp[k]) for k in truth) / len(truth)
    recall = sum(len(mp[k] & mt[k]) / len(mt[k]) for k in truth) / len(truth)
    return 2 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class Scores:
    messages: int
    merge_precision: float
    merge_recall: float
    cluster_precision: float
    cluster_recall: float
    cluster_f1: float
    cluster_bcubed_f1: float

    def lines(self) -> list[str]:
        return [
            f"messages          {self.messages}",
            f"merge precision   {self.merge_precision:.3f}",
            f"merge recall      {self.merge_recall:.3f}",
            f"cluster precision {self.cluster_precision:.3f}",
            f"cluster recall    {self.cluster_recall:.3f}",
            f"cluster F1        {self.cluster_f1:.3f}   (B-cubed {self.cluster_bcubed_f1:.3f})",
        ]


def score(items: list[dict[str, Any]], filed: Filed) -> Scores:
    gold_complaint = {m["id"]: m["complaint"] for m in items}
    gold_matter = {m["id"]: m["matter"] for m in items}
    mp, mr, _ = pair_scores(filed.complaint, gold_complaint)
    cp, cr, cf = pair_scores(filed.group, gold_matter)
    return Scores(len(items), mp, mr, cp, cr, cf, bcubed_f1(filed.group, gold_matter))


def errors(items: list[dict[str, Any]], filed: Filed) -> Iterable[str]:
    """The pairs merged that should not be, and those not merged that should be."""
    by_id = {m["id"]: m for m in items}
    gold = {m["id"]: m["complaint"] for m in items}
    wrong = _pairs(filed.complaint) - _pairs(gold)
    missed = _pairs(gold) - _pairs(filed.complaint)
    for title, pairs in (("WRONGLY MERGED", wrong), ("NOT MERGED", missed)):
        for a, b in sorted(pairs):
            yield f"{title} {a} / {b}\n   {by_id[a]['text'][:160]!r}\n   {by_id[b]['text'][:160]!r}"
    gold_m = {m["id"]: m["matter"] for m in items}
    wrong = _pairs(filed.group) - _pairs(gold_m) - _pairs(filed.complaint)
    missed = _pairs(gold_m) - _pairs(filed.group)
    for title, pairs in (("WRONGLY CLUSTERED", wrong), ("NOT CLUSTERED", missed)):
        for a, b in sorted(pairs)[:200]:
            yield f"{title} {a} / {b}\n   {by_id[a]['text'][:120]!r}\n   {by_id[b]['text'][:120]!r}"


def sweep(items: list[dict[str, Any]]) -> Iterable[str]:
    """Merge precision and recall at several merge thresholds, cluster F1 at several related
    thresholds: the figures the defaults are chosen from."""
    yield "merge threshold   precision recall"
    for threshold in (0.55, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95):
        got = score(items, run(items, merge_threshold=threshold))
        yield f"  {threshold:<15} {got.merge_precision:>9.3f} {got.merge_recall:>6.3f}"
    yield "related threshold precision recall F1"
    for threshold in (0.2, 0.25, 0.3, 0.34, 0.4, 0.5, 0.6):
        got = score(items, run(items, related_threshold=threshold))
        yield (
            f"  {threshold:<15} {got.cluster_precision:>9.3f} {got.cluster_recall:>6.3f}"
            f" {got.cluster_f1:.3f}"
        )


def main(argv: list[str]) -> None:
    name = next((a for a in argv if not a.startswith("-")), "messages.jsonl")
    items = load(name)
    if "--sweep" in argv:
        for line in sweep(items):
            print(line, flush=True)
        return
    filed = run(items)
    if "--errors" in argv:
        for line in errors(items, filed):
            print(line)
    print("\n".join(score(items, filed).lines()))


if __name__ == "__main__":
    main(sys.argv[1:])
