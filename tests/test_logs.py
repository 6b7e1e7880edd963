"""Log lines of the command line and of ``omnichannel serve``: one form, secrets scrubbed, and
waitress's per-request queue warning held to one line a minute."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from waitress.task import ThreadedTaskDispatcher

from omnichannel.logs import OncePerInterval, configure_logging, configure_server_logging

SECRET = "s3cret-auth-token"


@pytest.fixture(autouse=True)
def restore_loggers() -> Iterator[None]:
    """The loggers these tests configure are put back as they were."""
    names = ["omnichannel", "waitress", "waitress.queue"]
    saved = {
        name: (
            list(logging.getLogger(name).handlers),
            list(logging.getLogger(name).filters),
            logging.getLogger(name).level,
            logging.getLogger(name).propagate,
        )
        for name in names
    }
    yield
    for name, (handlers, filters, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:], logger.filters[:] = handlers, filters
        logger.setLevel(level)
        logger.propagate = propagate


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("waitress.queue", logging.WARNING, __file__, 1, message, args, None)


def test_once_per_interval_lets_one_through_and_then_counts_the_rest() -> None:
    """The first record passes; those within the interval are held; the first after it passes
    with the number held, and the count starts again."""
    clock = Clock()
    once = OncePerInterval(60.0, clock)
    assert once.filter(record("Task queue depth is %d", 1))
    held = [once.filter(record("Task queue depth is %d", n)) for n in range(2, 6)]
    assert held == [False] * 4
    clock.now += 59.9
    assert not once.filter(record("Task queue depth is %d", 6))
    clock.now += 0.2
    later = record("Task queue depth is %d", 7)
    assert once.filter(later)
    assert later.getMessage() == "Task queue depth is 7 (5 more like it not shown since the last)"
    clock.now += 61
    alone = record("Task queue depth is %d", 1)
    assert once.filter(alone) and alone.getMessage() == "Task queue depth is 1"


def test_serve_logging_holds_waitress_queue_warnings_to_one_per_interval(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """waitress's real dispatcher, with every request waiting (no free thread): a hundred
    queued requests give one warning line, in our form; after the interval the next says how
    many were not shown."""
    configure_server_logging(secrets=[SECRET])
    dispatcher = ThreadedTaskDispatcher()  # no threads started: every task waits
    for _ in range(100):
        dispatcher.add_task(object())
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0].endswith(" WARNING waitress.queue: Task queue depth is 1")
    queue = logging.getLogger("waitress.queue")
    [once] = [f for f in queue.filters if isinstance(f, OncePerInterval)]
    clock = Clock()
    clock.now = once.clock() + once.interval + 1
    once.clock = clock
    dispatcher.add_task(object())
    [line] = capsys.readouterr().err.splitlines()
    assert line.endswith("Task queue depth is 101 (99 more like it not shown since the last)")


def test_serve_logging_configured_twice_keeps_one_queue_filter() -> None:
    """``serve`` may configure logging again (tests, embedding): the queue filter is not
    stacked, so warnings are not held twice over."""
    configure_server_logging()
    configure_server_logging()
    filters = logging.getLogger("waitress.queue").filters
    assert sum(isinstance(f, OncePerInterval) for f in filters) == 1


def test_waitress_lines_are_scrubbed_and_formatted_like_ours(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A waitress error that quotes a secret shows it redacted, in the same form as
    omnichannel's own lines, and only once (it does not also reach the root logger)."""
    root = logging.getLogger()
    seen: list[logging.LogRecord] = []
    catcher = logging.Handler()
    catcher.emit = seen.append  # type: ignore[method-assign]
    root.addHandler(catcher)
    try:
        configure_server_logging(secrets=[SECRET])
        logging.getLogger("waitress").error("Exception while serving /x: token=%s", SECRET)
        logging.getLogger("omnichannel.http").warning("ours, token=%s", SECRET)
    finally:
        root.removeHandler(catcher)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == [
        "ERROR waitress: Exception while serving /x: token=[redacted]",
        "WARNING omnichannel.http: ours, token=[redacted]",
    ]
    assert seen == []


def test_other_commands_leave_waitress_alone() -> None:
    """Only ``serve`` takes over waitress's logger; ``configure_logging`` (every other command)
    configures omnichannel's alone."""
    waitress = logging.getLogger("waitress")
    before = list(waitress.handlers)
    configure_logging(secrets=[SECRET])
    assert waitress.handlers == before
    assert logging.getLogger("omnichannel").handlers
