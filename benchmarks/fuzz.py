"""Fuzz every built-in decoder with hostile variants of real payloads, and say how it went.

    .venv/bin/python benchmarks/fuzz.py                    # 100,000 inputs per decoder
    .venv/bin/python benchmarks/fuzz.py --n 5000 --only sms,wa --seed 7

For each connector type, ``--n`` inputs are made by :mod:`omnichannel.testing.hostile` from the
test corpus (``tests/hostile_corpus.py``: the Twilio forms, Meta webhooks and mails of
``tests/testdata``, a web form in JSON and urlencoded, a ``.json`` document, Gammu rows) and put
through what the daemon does with them before storing and filing: the webhook connector's
``parse`` (which may refuse with a 4xx), ``decode``, then ``normalize``. Every input must end
as a refusal, a message or a ``DecodeError``; anything else is a **crash**, printed with the
seed that reproduces it, and the script exits 1.

Beside the counts it prints the time per input against a baseline measured in the same run
(the same steps on the unmodified corpus), and the slowest single input: the bound on what
one hostile message costs. Work is split over ``--workers`` processes (default: the CPUs).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import traceback
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from omnichannel import DecodeError
from omnichannel.connector import Connector
from omnichannel.webhook import WebhookRejected
from tests.hostile_corpus import KINDS, build_connectors, decode_for_filing, hostile_input, raws_of


@dataclass
class Tally:
    """What came of a run of inputs."""

    inputs: int = 0
    refused: int = 0
    decoded: int = 0
    decode_errors: int = 0
    crashes: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    slowest: float = 0.0
    slowest_seed: int = -1

    def add(self, other: Tally) -> None:
        self.inputs += other.inputs
        self.refused += other.refused
        self.decoded += other.decoded
        self.decode_errors += other.decode_errors
        self.crashes.update(other.crashes)
        for key, value in other.examples.items():
            self.examples.setdefault(key, value)
        self.seconds += other.seconds
        if other.slowest > self.slowest:
            self.slowest, self.slowest_seed = other.slowest, other.slowest_seed


def one(kind: str, connector: Connector, seed: int, tally: Tally) -> None:
    """Put the input of ``seed`` through parse, decode and normalize as the daemon does;
    count what came of it. Making the input is not timed."""
    item = hostile_input(kind, random.Random(seed))
    started = time.perf_counter()
    try:
        raws = raws_of(kind, connector, item)
    except WebhookRejected as exc:
        if not 400 <= exc.status < 500:
            _crash(tally, f"WebhookRejected {exc.status}", seed)
        else:
            tally.refused += 1
    except Exception as exc:
        _crash(tally, type(exc).__name__, seed)
    else:
        for raw in raws:
            try:
                decode_for_filing(connector, raw)
            except DecodeError:
                tally.decode_errors += 1
            except Exception as exc:
                _crash(tally, type(exc).__name__, seed)
            else:
                tally.decoded += 1
    took = time.perf_counter() - started
    tally.inputs += 1
    tally.seconds += took
    if took > tally.slowest:
        tally.slowest, tally.slowest_seed = took, seed


def _crash(tally: Tally, name: str, seed: int) -> None:
    tally.crashes[name] += 1
    if name not in tally.examples:
        tally.examples[name] = f"seed {seed}:\n{traceback.format_exc(limit=6)}"


def run_range(kind: str, first: int, count: int) -> Tally:
    """One worker's share: seeds ``first`` .. ``first + count - 1``."""
    import logging

    logging.disable(logging.CRITICAL)  # (the decoders' warnings, 100,000 times over)
    with tempfile.TemporaryDirectory() as folder:
        connector = build_connectors(Path(folder))[kind]
        tally = Tally()
        for seed in range(first, first + count):
            one(kind, connector, seed, tally)
    return tally


def baseline(kind: str, count: int) -> float:
    """Seconds per input for the same steps on the unmodified corpus."""
    import logging

    from tests import hostile_corpus

    logging.disable(logging.CRITICAL)
    with tempfile.TemporaryDirectory() as folder:
        connector = build_connectors(Path(folder))[kind]
        originals = {
            "hostile_form": hostile_corpus.hostile_form,
            "hostile_json": hostile_corpus.hostile_json,
            "hostile_mail": hostile_corpus.hostile_mail,
            "hostile_bytes": hostile_corpus.hostile_bytes,
        }
        hostile_corpus.hostile_form = _plain_form  # type: ignore[assignment]
        hostile_corpus.hostile_json = _plain_json  # type: ignore[assignment]
        hostile_corpus.hostile_mail = lambda data, rng: data  # type: ignore[assignment]
        hostile_corpus.hostile_bytes = lambda data, rng: data  # type: ignore[assignment]
        try:
            tally = Tally()
            for seed in range(count):
                one(kind, connector, seed, tally)
        finally:
            for name, value in originals.items():
                setattr(hostile_corpus, name, value)
    if tally.crashes:
        raise SystemExit(f"{kind}: the unmodified corpus crashes: {dict(tally.crashes)}")
    return tally.seconds / max(tally.inputs, 1)


def _plain_form(fields: list[tuple[str, str]], rng: random.Random) -> bytes:
    from urllib.parse import urlencode

    return urlencode(fields).encode()


def _plain_json(doc: object, rng: random.Random) -> bytes:
    import json

    return json.dumps(doc).encode()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="inputs per decoder")
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--only", default=",".join(KINDS), help="comma-separated connector names")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    kinds = [k for k in args.only.split(",") if k]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        parser.error(f"unknown: {unknown}; known: {KINDS}")
    print(
        f"{'decoder':8} {'inputs':>8} {'refused':>8} {'decoded':>8} {'DecodeErr':>9} "
        f"{'crashes':>7} {'µs/input':>9} {'baseline':>9} {'ratio':>6} {'slowest ms':>10} (seed)"
    )
    failed = False
    for kind in kinds:
        base = baseline(kind, min(args.n, 2000))
        share = -(-args.n // args.workers)
        total = Tally()
        with ProcessPoolExecutor(args.workers) as pool:
            futures = [
                pool.submit(run_range, kind, args.seed + i * share, min(share, args.n - i * share))
                for i in range(args.workers)
                if args.n - i * share > 0
            ]
            for future in futures:
                total.add(future.result())
        per = total.seconds / max(total.inputs, 1)
        print(
            f"{kind:8} {total.inputs:>8,} {total.refused:>8,} {total.decoded:>8,} "
            f"{total.decode_errors:>9,} {sum(total.crashes.values()):>7,} {per * 1e6:>9.0f} "
            f"{base * 1e6:>9.0f} {per / base:>6.1f} {total.slowest * 1e3:>10.1f} "
            f"({total.slowest_seed})",
            flush=True,
        )
        for name, example in total.examples.items():
            failed = True
            print(f"  CRASH {name} x{total.crashes[name]}: {example}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
