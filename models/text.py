"""Text preprocessing shared by training and serving: one definition of each model's input."""

import re
import unicodedata

from anyascii import anyascii

NAME_MAX_LENGTH = 64
_NOT_NAME = re.compile(r"[^A-Za-z' ]+")
_SPACES = re.compile(r"\s+")


def normalize_name(text: str) -> str:
    """Fold any Unicode surname to the name model's alphabet (letters, apostrophe, space).

    Drop symbols, emoji and control characters; transliterate the rest to ASCII (``Müller`` ->
    ``Muller``, ``Иванов`` -> ``Ivanov``); turn hyphens and other separators into spaces; drop
    everything else; collapse spaces and title-case each word (``NGUYEN`` and ``nguyen`` ->
    ``Nguyen``, ``o'neal`` -> ``O'Neal``). Returns ``""`` when nothing is left.
    """
    kept = "".join(c for c in unicodedata.normalize("NFC", text) if _is_name_char(c))
    folded = anyascii(kept)
    folded = _NOT_NAME.sub(lambda m: " " if _is_separator(m.group()) else "", folded)
    return _SPACES.sub(" ", folded).strip(" '").title()


def _is_name_char(c: str) -> bool:
    """Letters, marks, spaces, dashes and apostrophes; symbols, emoji and controls go."""
    category = unicodedata.category(c)
    return category[0] in "LM" or category in ("Zs", "Pd") or c in "'\u2019\u02bc\t"


def _is_separator(chunk: str) -> bool:
    return any(c.isspace() or c in "-_.,/" for c in chunk)


def encode_name(name: str) -> list[int]:
    """ASCII codes of an already normalised name, the model's input."""
    return [ord(c) for c in name]
