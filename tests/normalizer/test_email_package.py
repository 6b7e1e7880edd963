"""The ``normalizer.email`` package: one public surface over private modules by concern."""

from __future__ import annotations

import importlib
import pkgutil

import normalizer.email as package

PRIVATE_MODULES = sorted(info.name for info in pkgutil.iter_modules(package.__path__))


def test_public_names_are_sorted_and_defined() -> None:
    """``__all__`` is sorted and every name in it is defined by the package."""
    assert package.__all__ == sorted(package.__all__)
    for name in package.__all__:
        assert getattr(package, name) is not None, name


def test_names_other_modules_import_still_resolve() -> None:
    """What connectors, ``normalizer.normalize``, tests and benchmarks import from
    ``normalizer.email`` is still there (the package replaced a single module)."""
    imported = {
        "decode_email",
        "decode_header_text",
        "decode_text",
        "email_external_id",
        "safe_filename",
        "sniff_content_type",
        "strip_reply_prefixes",
        "_checked_payload",
        "_decode_with",
        "html_to_text",
    }
    assert {name for name in imported if not callable(getattr(package, name, None))} == set()


def test_modules_are_private_and_say_what_they_hold() -> None:
    """Every module of the package is private (``_name``) and opens with a docstring."""
    assert len(PRIVATE_MODULES) >= 5
    for name in PRIVATE_MODULES:
        module = importlib.import_module(f"{package.__name__}.{name}")
        assert name.startswith("_"), name
        assert (module.__doc__ or "").strip(), name
