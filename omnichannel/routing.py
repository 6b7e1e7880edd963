"""Routing: which agency and category a new complaint goes to.

Ordered rules from the configuration (``[[routes]]``), the first that matches wins; without a
match, the default route (the coordinating office). A rule matches when every condition it
sets holds: ``pattern`` (a regular expression, case-insensitive) or any of ``keywords`` (whole
words, case-insensitive) in the subject and body, ``channel``, ``connector``. An agency or
category the complaint already carries (the web form's fields) is kept. The name of the rule
that decided is recorded on the complaint (``complaints.route``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from omnichannel.schema import NormalizedMessage

__all__ = ["DEFAULT_ROUTE", "Route", "Router"]

DEFAULT_ROUTE = "default"


@dataclass(frozen=True)
class Route:
    name: str
    agency: str
    category: str | None = None
    pattern: re.Pattern[str] | None = None
    channel: str | None = None
    connector: str | None = None

    def matches(self, message: NormalizedMessage) -> bool:
        if self.channel is not None and message.channel != self.channel:
            return False
        if self.connector is not None and message.connector != self.connector:
            return False
        if self.pattern is not None:
            text = f"{message.display_subject or message.subject or ''}\n{message.body}"
            return self.pattern.search(text) is not None
        return True


@dataclass(frozen=True)
class Router:
    """The rules in order, then the default route."""

    routes: tuple[Route, ...] = ()
    default_agency: str = "DPMPTSP"
    default_category: str = "other"

    def route(self, message: NormalizedMessage) -> tuple[str, str, str]:
        """``(agency, category, route name)`` for a new complaint opened by ``message``."""
        for rule in self.routes:
            if rule.matches(message):
                return (
                    message.agency or rule.agency,
                    message.category or rule.category or self.default_category,
                    rule.name,
                )
        return (
            message.agency or self.default_agency,
            message.category or self.default_category,
            DEFAULT_ROUTE,
        )


def compile_pattern(pattern: str | None, keywords: list[str]) -> re.Pattern[str] | None:
    """One case-insensitive expression for a rule's ``pattern`` and ``keywords``."""
    parts = [f"(?:{pattern})"] if pattern else []
    parts += [rf"\b{re.escape(word)}\b" for word in keywords]
    return re.compile("|".join(parts), re.IGNORECASE) if parts else None
