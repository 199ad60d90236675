"""Masker registry: JSON tag -> config class -> masker class.

Classes register themselves when they are defined (``MaskerConfig.__init_subclass__`` records
the config's ``type_tag``, its class name and its ``legacy_tags``; ``ResearchMasker``
subclasses bind themselves to their ``config_type``). The ``sah.maskers`` entry points are
only there to *import* plug-in modules nobody imported yet: they are loaded once, the first
time a lookup misses. A broken plug-in is logged and skipped, so one bad third-party package
cannot break the others.

This module imports nothing from :mod:`sah_core.maskers.base` at run time (``base`` imports
this one), so there is no import cycle.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from sah_protocol import MASKERS_ENTRY_POINT_GROUP

if TYPE_CHECKING:
    from sah_core.maskers.base import MaskerConfig, ResearchMasker

logger = logging.getLogger(__name__)

_configs_by_tag: dict[str, type[MaskerConfig]] = {}
_plugins_loaded = False


def register_config(config_class: type[MaskerConfig]) -> None:
    """Record ``config_class`` under its tag, class name and legacy tags (called on definition)."""
    for tag in (config_class.type_tag, config_class.__name__, *config_class.legacy_tags):
        _configs_by_tag[tag] = config_class


def bind_masker(
    config_class: type[MaskerConfig], masker_class: type[ResearchMasker], *, replace: bool
) -> None:
    """Make ``masker_class`` the masker of ``config_class`` (the first definition wins unless
    ``replace``)."""
    current = config_class.__dict__.get("masker_class")
    if current is None or replace:
        config_class.masker_class = masker_class
    elif current is not masker_class:
        logger.debug(
            "%s keeps masker %s (not rebinding to %s; use register_masker to replace it)",
            config_class.__name__,
            current.__name__,
            masker_class.__name__,
        )


def register_masker(masker_class: type[ResearchMasker]) -> type[ResearchMasker]:
    """Bind ``masker_class`` to its ``config_type`` at run time, replacing any earlier masker
    of that config (usable as a decorator)."""
    from sah_core.maskers.base import MaskerConfig, ResearchMasker

    config_type = getattr(masker_class, "config_type", None)
    if (
        not isinstance(masker_class, type)
        or not issubclass(masker_class, ResearchMasker)
        or not isinstance(config_type, type)
        or config_type is MaskerConfig
    ):
        raise ValueError(
            f"masker_class={masker_class!r} is not allowed: expected a ResearchMasker subclass "
            "with its own config_type"
        )
    register_config(config_type)
    bind_masker(config_type, masker_class, replace=True)
    return masker_class


def load_plugins() -> None:
    """Import every ``sah.maskers`` entry point's module once (defining registers them)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group=MASKERS_ENTRY_POINT_GROUP):
        try:
            ep.load()
        except ModuleNotFoundError as error:
            logger.debug("skipping masker entry point %s=%s: %s", ep.name, ep.value, error)
        except Exception as error:  # a broken plug-in must not break the others
            logger.warning("skipping masker entry point %s=%s: %s", ep.name, ep.value, error)


def available_maskers() -> dict[str, type[ResearchMasker]]:
    """Config ``type_tag`` -> masker class, for every masker that can be built."""
    load_plugins()
    found: dict[str, type[ResearchMasker]] = {}
    for config_class in set(_configs_by_tag.values()):
        if config_class.masker_class is not None:
            found[config_class.type_tag] = config_class.masker_class
    return dict(sorted(found.items()))


def known_tags() -> list[str]:
    """The ``type_tag`` of every config that has a masker (for error messages)."""
    return sorted(available_maskers())


def masker_class_for(config: MaskerConfig) -> type[ResearchMasker]:
    """The masker class built from ``config``."""
    masker = type(config).masker_class
    if masker is None:
        load_plugins()
        masker = type(config).masker_class
    if masker is None:
        raise ValueError(
            f"config type {type(config).__name__!r} is not allowed: no masker is bound to it "
            f"(known tags: {known_tags()})"
        )
    return masker


def config_class_for(type_tag: str) -> type[MaskerConfig]:
    """The config class whose tag (or class name, or legacy tag) is ``type_tag``."""
    config_class = _configs_by_tag.get(type_tag)
    if config_class is None:
        load_plugins()
        config_class = _configs_by_tag.get(type_tag)
    if config_class is None:
        raise ValueError(
            f"type={type_tag!r} is not allowed: no masker config has that tag "
            f"(known: {known_tags()})"
        )
    return config_class
