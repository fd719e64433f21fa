"""Scrub known secret values from text before it leaves the process (logs, progress events, agent output).

A worker that has read secrets gives their values to a `Redactor` and passes everything it
reports through it. Besides each value verbatim it masks the value's JSON-escaped form (how a
multi-line key looks inside a JSON log line) and each long line of a multi-line value (a key
printed line by line).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable
from typing import Any

MASK = "***"
MIN_SECRET_CHARS = 4
"""Shorter values are not masked: replacing every "on" or "1" would destroy the text and hide nothing."""
MIN_LINE_CHARS = 8
"""Lines of multi-line values are masked on their own only from this length ("}" or "-----" are not secrets)."""


def _variants(value: str) -> set[str]:
    variants = {value, json.dumps(value, ensure_ascii=False)[1:-1], json.dumps(value)[1:-1]}
    if "\n" in value or "\r" in value:
        variants.update(line.strip() for line in value.splitlines() if len(line.strip()) >= MIN_LINE_CHARS)
    return {v for v in variants if len(v) >= MIN_SECRET_CHARS}


class Redactor:
    """Masks every occurrence of its secret values with `***`; safe to share between threads.

    All values go into one compiled alternation, longest first, so a value that contains
    another is masked whole and the text is scanned once whatever the number of values.
    """

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._needles: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(*values)

    def add(self, *values: str) -> None:
        """Learn more values (e.g. each secret as a worker reads it)."""
        needles: set[str] = set()
        for value in values:
            needles |= _variants(value)
        with self._lock:
            if needles <= self._needles:
                return
            self._needles |= needles
            ordered = sorted(self._needles, key=lambda n: (-len(n), n))
            self._pattern = re.compile("|".join(re.escape(n) for n in ordered))

    def __len__(self) -> int:
        """How many distinct strings are masked (values and their variants)."""
        return len(self._needles)

    def redact(self, text: str) -> str:
        pattern = self._pattern
        if pattern is None or not text:
            return text
        return pattern.sub(MASK, text)

    def redact_obj(self, obj: Any) -> Any:
        """A copy of a JSON-like structure with every string (keys too) redacted; other leaves as they are."""
        if isinstance(obj, str):
            return self.redact(obj)
        if isinstance(obj, dict):
            return {self.redact_obj(k): self.redact_obj(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self.redact_obj(item) for item in obj]
        if isinstance(obj, tuple):
            items = [self.redact_obj(item) for item in obj]
            return type(obj)(*items) if hasattr(obj, "_fields") else tuple(items)
        return obj
