"""Connector types, found by name through the ``omnichannel.connectors`` entry-point group.

Built-in connectors are registered the same way as third-party ones (see ``pyproject.toml``).
Nothing is imported until a type is asked for; an unknown type fails with the known names and a
"did you mean".
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING

from omnichannel.errors import UnknownConnector

if TYPE_CHECKING:
    from omnichannel.connector import Connector

__all__ = ["GROUP", "available_types", "connector_class", "register"]

GROUP = "omnichannel.connectors"
_extra: dict[str, type[Connector]] = {}


@cache
def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def available_types() -> list[str]:
    """Every connector type that can be configured, sorted."""
    return sorted(set(_entry_points()) | set(_extra))


def register(type_name: str, cls: type[Connector]) -> None:
    """Register a connector class at run time (tests, notebooks); entry points are preferred."""
    _extra[type_name] = cls


def connector_class(type_name: str) -> type[Connector]:
    """The connector class for ``type_name``, imported on first use."""
    from omnichannel.connector import Connector

    if type_name in _extra:
        return _extra[type_name]
    entry = _entry_points().get(type_name)
    if entry is None:
        raise UnknownConnector("type", type_name, available_types())
    cls = entry.load()
    if not (isinstance(cls, type) and issubclass(cls, Connector)):
        raise TypeError(f"entry point {type_name!r} ({entry.value}) is not a Connector class")
    return cls
