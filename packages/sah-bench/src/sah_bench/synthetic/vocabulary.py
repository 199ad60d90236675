"""Word material for the synthetic suite: a small English vocabulary for keys and filler
sentences, and pronounceable pseudo-words for the word-counting tasks (thousands of distinct
words are needed at 32K tokens, more than a hand-written list holds)."""

from __future__ import annotations

import random

NOUNS: tuple[str, ...] = (
    "apple", "anchor", "badge", "basket", "beacon", "bridge", "candle", "canyon", "castle",
    "cedar", "circle", "cloud", "comet", "copper", "coral", "cotton", "crystal", "dagger",
    "desert", "dolphin", "dragon", "engine", "falcon", "feather", "forest", "fountain",
    "garden", "glacier", "harbor", "hammer", "island", "jacket", "jungle", "kettle", "ladder",
    "lantern", "lemon", "marble", "meadow", "mirror", "monkey", "needle", "orchid", "palace",
    "panther", "pepper", "pillow", "planet", "pocket", "quartz", "rabbit", "ribbon", "river",
    "rocket", "saddle", "salmon", "shadow", "silver", "spider", "spring", "statue", "summit",
    "teapot", "thunder", "ticket", "tiger", "tunnel", "valley", "velvet", "violin", "walnut",
    "window", "winter", "wizard", "zebra",
)  # fmt: skip

ADJECTIVES: tuple[str, ...] = (
    "amber", "ancient", "bitter", "bold", "brave", "bright", "calm", "clever", "cold",
    "crimson", "curious", "dusty", "eager", "early", "faint", "fancy", "fierce", "gentle",
    "golden", "grand", "hidden", "hollow", "humble", "icy", "jolly", "lazy", "little",
    "lively", "lonely", "lucky", "misty", "noble", "odd", "pale", "polite", "proud", "quick",
    "quiet", "rapid", "rough", "rusty", "shiny", "silent", "sleepy", "smooth", "solid",
    "steady", "sunny", "swift", "tall", "tiny", "velvet", "warm", "wild", "wise", "young",
)  # fmt: skip

_FILLER_SUBJECTS: tuple[str, ...] = (
    "The old farmer", "A young painter", "The ship's cook", "Our neighbour", "The librarian",
    "A travelling merchant", "The night guard", "My cousin", "The school teacher",
    "A quiet student", "The baker", "The station master",
)  # fmt: skip
_FILLER_VERBS: tuple[str, ...] = (
    "walked past", "painted", "repaired", "counted", "described", "visited", "sketched",
    "cleaned", "photographed", "measured", "admired", "forgot about",
)  # fmt: skip
_FILLER_PLACES: tuple[str, ...] = (
    "before breakfast", "in the rain", "after the market closed", "on a windy afternoon",
    "near the harbour", "at the end of summer", "without saying a word", "twice that week",
    "under a grey sky", "while the kettle boiled",
)  # fmt: skip

_SYLLABLES: tuple[str, ...] = tuple(c + v for c in "bdfgklmnprstvz" for v in "aeiou")


def filler_sentence(rng: random.Random) -> str:
    """One neutral sentence of haystack text."""
    obj = f"the {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"
    return (
        f"{rng.choice(_FILLER_SUBJECTS)} {rng.choice(_FILLER_VERBS)} {obj} "
        f"{rng.choice(_FILLER_PLACES)}."
    )


def key_phrase(rng: random.Random) -> str:
    """A needle key such as ``"quiet-harbor"``."""
    return f"{rng.choice(ADJECTIVES)}-{rng.choice(NOUNS)}"


def magic_number(rng: random.Random) -> str:
    """A 7-digit value (no leading zero)."""
    return str(rng.randint(1_000_000, 9_999_999))


def pseudo_words(rng: random.Random, count: int, syllables: int = 3) -> list[str]:
    """``count`` distinct pronounceable pseudo-words (raises if more are asked than exist)."""
    limit = len(_SYLLABLES) ** syllables
    if count > limit:
        raise ValueError(f"pseudo_words: count {count} exceeds the {limit} distinct words")
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < count:
        word = "".join(rng.choice(_SYLLABLES) for _ in range(syllables))
        if word not in seen:
            seen.add(word)
            out.append(word)
    return out


def variable_name(rng: random.Random) -> str:
    """A five-letter upper-case variable name."""
    return "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(5))
