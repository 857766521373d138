"""A test-only hook that makes the daemon die hard at one named point.

`MEDIANALYSED_CRASH_AT=POINT` (or `POINT:SUBJECT`, e.g. `enumerate:poison`) makes the process
exit at once (`os._exit`, like SIGKILL: no cleanup, no flush) when it reaches that point
(for that batch). Tests use it to kill the daemon exactly between two durable steps, which a
signal from outside cannot aim at. Unset (always, outside tests) it costs one comparison
against an empty string read once at import.
"""

from __future__ import annotations

import os
from typing import Final

CRASH_ENV: Final = "MEDIANALYSED_CRASH_AT"
CRASH_EXIT_CODE: Final = 86
_TARGET: Final = os.environ.get(CRASH_ENV, "")


def crash_point(point: str, subject: str = "") -> None:
    """Die here if the environment names this point (and subject)."""
    if _TARGET and _TARGET in (point, f"{point}:{subject}"):
        os.write(2, f"medianalysed: test crash point {point}:{subject} reached\n".encode())
        os._exit(CRASH_EXIT_CODE)
