"""Masker registry: config type tag -> (config class, masker class).

Maskers are discovered through the ``sah.maskers`` entry-point group (each entry point names
a masker class whose ``config_type`` names its config). ``register_masker`` adds one at run
time (tests, notebooks). A broken or missing plug-in is logged and skipped, so one bad
third-party package cannot break the others.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

from sah_core.maskers.base import MaskerConfig, ResearchMasker
from sah_protocol import MASKERS_ENTRY_POINT_GROUP

logger = logging.getLogger(__name__)

_registered: dict[str, type[ResearchMasker]] = {}
_discovered: dict[str, type[ResearchMasker]] | None = None


def register_masker(masker_class: type[ResearchMasker]) -> type[ResearchMasker]:
    """Register a masker class under its config's class name (usable as a decorator)."""
    config_type = getattr(masker_class, "config_type", None)
    if (
        not isinstance(masker_class, type)
        or not issubclass(masker_class, ResearchMasker)
        or config_type is None
        or config_type is MaskerConfig
    ):
        raise ValueError(
            f"masker_class={masker_class!r} is not allowed: expected a ResearchMasker subclass "
            "with its own config_type"
        )
    _registered[config_type.__name__] = masker_class
    return masker_class


def _discover() -> dict[str, type[ResearchMasker]]:
    global _discovered
    if _discovered is None:
        found: dict[str, type[ResearchMasker]] = {}
        for ep in entry_points(group=MASKERS_ENTRY_POINT_GROUP):
            try:
                loaded = ep.load()
            except ModuleNotFoundError as error:
                # a declared masker whose module is not in this checkout (yet)
                logger.debug("skipping masker entry point %s=%s: %s", ep.name, ep.value, error)
                continue
            except Exception as error:  # a broken plug-in must not break the others
                logger.warning("skipping masker entry point %s=%s: %s", ep.name, ep.value, error)
                continue
            config_type = getattr(loaded, "config_type", None)
            if (
                isinstance(loaded, type)
                and issubclass(loaded, ResearchMasker)
                and config_type is not None
            ):
                found[config_type.__name__] = loaded
            else:
                logger.warning(
                    "skipping masker entry point %s: %r is not a masker", ep.name, loaded
                )
        _discovered = found
    return _discovered


def available_maskers() -> dict[str, type[ResearchMasker]]:
    """Config type name -> masker class, for every discovered or registered masker."""
    return {**_discover(), **_registered}


def masker_class_for(config: MaskerConfig) -> type[ResearchMasker]:
    """The masker class built from ``config`` (looked up by its type)."""
    maskers = available_maskers()
    name = type(config).__name__
    masker = maskers.get(name)
    if masker is None or not isinstance(config, masker.config_type):
        raise ValueError(
            f"config type {name!r} is not allowed: no masker is registered for it "
            f"(known: {sorted(maskers)})"
        )
    return masker


def config_class_for(type_tag: str) -> type[MaskerConfig]:
    """The config class whose ``to_dict()`` carries ``type_tag``."""
    maskers = available_maskers()
    masker = maskers.get(type_tag)
    if masker is None:
        raise ValueError(
            f"type={type_tag!r} is not allowed: no masker config of that name is registered "
            f"(known: {sorted(maskers)})"
        )
    return masker.config_type
