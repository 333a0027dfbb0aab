"""Text that cannot be sent: a lone UTF-16 surrogate ("\\udc80" alone is valid JSON, so a signed claim or a
query parameter can carry one) has no UTF-8 form, so no URL, form field or header can hold it."""

from __future__ import annotations

import re

LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def has_lone_surrogate(text: str) -> bool:
    return LONE_SURROGATE.search(text) is not None


def replace_lone_surrogates(text: str) -> str:
    """Each lone surrogate as U+FFFD, as a browser shows it."""
    return LONE_SURROGATE.sub("\ufffd", text)
