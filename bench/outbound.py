"""What a request waited for: the time the calling thread spent in outbound HTTP answers (http.client's
getresponse, under every stack: ours, urllib3, botocore), so a benchmark can report a handler's own time as its
total less that wait. Importing this module installs the timer; only `timed` calls are measured."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable

_measuring = threading.local()
_original_getresponse = http.client.HTTPConnection.getresponse


def _timed_getresponse(self, *args, **kwargs):
    started = time.perf_counter()
    try:
        return _original_getresponse(self, *args, **kwargs)
    finally:
        if getattr(_measuring, "seconds", None) is not None:
            _measuring.seconds += time.perf_counter() - started


http.client.HTTPConnection.getresponse = _timed_getresponse


def timed[T](call: Callable[[], T]) -> tuple[T, float, float]:
    """(what `call` returned, its total seconds, the seconds this thread waited for outbound answers in it)."""
    _measuring.seconds = 0.0
    started = time.perf_counter()
    try:
        result = call()
        return result, time.perf_counter() - started, _measuring.seconds
    finally:
        _measuring.seconds = None
