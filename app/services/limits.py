"""What one request may ask of a model, whichever door it comes through (typed route, ``/v2``,
explanation, stream, batch). Each limit is checked once, in its family's service, before any
work; the request schemas and the ``/v2`` codec read the same numbers for their documentation
and their first bounds on a body's size."""

from typing import Final

MAX_NAME_CHARS: Final = 1000
"""Characters of one surname as sent, before folding (folding costs in proportion)."""
MAX_NAMES: Final = 256
"""Surnames in one request."""
MAX_TEXT_CHARS: Final = 1000
"""Characters of one text to transduce."""
MAX_TEXTS: Final = 256
"""Texts to transduce in one request."""
MAX_PROMPT_CHARS: Final = 2000
"""Characters of one generation prompt."""
MAX_PROMPTS: Final = 8
"""Prompts one request generates from, one after another, within one deadline."""
MAX_IMAGES: Final = 256
"""Images in one request."""
MAX_ITEMS: Final = max(MAX_NAMES, MAX_TEXTS, MAX_PROMPTS, MAX_IMAGES)
"""The most elements any model takes in one request."""
