"""Dedupe measured on the labelled evaluation set (tests/dedupe_eval): merge precision and
recall, cluster F1, with the default configuration and the real filing path."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta

import pytest

from tests.dedupe_eval.evaluate import load, pair_scores, run, score

MERGE_PRECISION = 0.99
MERGE_RECALL = 0.90
CLUSTER_F1 = 0.85


@pytest.mark.parametrize("name", ["messages.jsonl", "holdout.jsonl"])
def test_dedupe_meets_the_bar_on_the_evaluation_set(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Filing the set merges with precision >= 0.99 and recall >= 0.90, and clusters with
    pairwise F1 >= 0.85 — on the set the thresholds were chosen with and on the holdout set
    written apart from it."""
    items = load(name)
    got = score(items, run(items))
    with capsys.disabled():
        print(f"\n{name}\n" + "\n".join(got.lines()))
    assert got.merge_precision >= MERGE_PRECISION, got
    assert got.merge_recall >= MERGE_RECALL, got
    assert got.cluster_f1 >= CLUSTER_F1, got


def test_the_evaluation_set_is_what_the_issue_asks_for() -> None:
    """At least 300 messages in the main set, on every channel, in Indonesian and English;
    the cases named by the issue are all there; labels are consistent (the messages of one
    complaint are one matter, from one channel-linkable sender, within 72 hours)."""
    items = load()
    assert len(items) >= 300
    assert {m["channel"] for m in items} == {"email", "sms", "whatsapp", "web"}
    kinds = Counter(m["kind"].split("-")[0] for m in items)
    for kind in ("resend", "three", "same", "template", "mass", "single"):
        assert kinds[kind] >= 10, (kind, kinds)
    by_complaint: dict[str, list[dict[str, object]]] = {}
    for m in items:
        by_complaint.setdefault(m["complaint"], []).append(m)
    for members in by_complaint.values():
        assert len({m["matter"] for m in members}) == 1
        times = [datetime.fromisoformat(str(m["at"])) for m in members]
        assert max(times) - min(times) <= timedelta(hours=72)
    assert sum(len(v) > 1 for v in by_complaint.values()) >= 40  # resends to merge
    matters = Counter(m["matter"] for m in items)
    assert sum(n >= 5 for n in matters.values()) >= 6  # mass reports
    assert len({m["id"] for m in items}) == len(items)
    assert all(json.dumps(m, ensure_ascii=False) for m in items)


def test_pair_scores_count_pairs() -> None:
    """The metric itself: a wrong merge costs precision, a missed one recall."""
    truth = {"a": 1, "b": 1, "c": 2, "d": 3}
    assert pair_scores({"a": 1, "b": 1, "c": 2, "d": 3}, truth) == (1.0, 1.0, 1.0)
    precision, recall, _ = pair_scores({"a": 1, "b": 1, "c": 1, "d": 3}, truth)
    assert (precision, recall) == (1 / 3, 1.0)
    precision, recall, _ = pair_scores({"a": 1, "b": 2, "c": 3, "d": 4}, truth)
    assert (precision, recall) == (1.0, 0.0)
