"""A progress bar for long commands, on a terminal or not.

On a terminal the bar is redrawn in place (at most a few times a second). Without one (a pipe,
a log file, cron, systemd) a plain line is written every ``interval`` seconds instead, so logs
show that work goes on without being flooded. Lines written through ``line`` appear above the
bar, which is then drawn again.
"""

import time
from collections.abc import Callable
from typing import TextIO

BAR_WIDTH = 28
REDRAW_SECONDS = 0.2


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def human_count(n: float) -> str:
    return f"{n:,.0f}"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """``Progress(stream, title="import", total=n, fmt=human_bytes)``; ``update(done, note)``."""

    def __init__(
        self,
        stream: TextIO,
        *,
        title: str,
        total: int | None,
        fmt: Callable[[float], str] = human_count,
        interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.title = title
        self.total = total
        self.fmt = fmt
        self.interval = interval
        self.clock = clock
        isatty = getattr(stream, "isatty", None)
        self.tty = bool(isatty and isatty())
        self.started = clock()
        self.done = 0
        self.note = ""
        self._last_draw = float("-inf")
        self._drawn = False

    def update(self, done: int, note: str = "") -> None:
        self.done = done
        if note:
            self.note = note
        now = self.clock()
        wait = REDRAW_SECONDS if self.tty else self.interval
        if now - self._last_draw >= wait:
            self._draw(now)

    def line(self, text: str) -> None:
        """Write a line of text (a skipped file, a warning) without breaking the bar."""
        if self.tty and self._drawn:
            self._write("\r\x1b[K")
        self._write(text + "\n")
        if self.tty and self._drawn:
            self._draw(self.clock())

    def finish(self, done: int | None = None) -> None:
        if done is not None:
            self.done = done
        self._draw(self.clock(), final=True)
        if self.tty:
            self._write("\n")

    def _status(self, now: float, final: bool) -> str:
        elapsed = now - self.started
        parts = []
        if self.total:
            fraction = min(self.done / self.total, 1.0)
            parts.append(f"{fraction * 100:3.0f}%")
            parts.append(f"{self.fmt(self.done)} of {self.fmt(self.total)}")
            if not final and 0 < fraction < 1 and elapsed > 2:
                parts.append(f"{_duration(elapsed * (1 - fraction) / fraction)} left")
        else:
            parts.append(self.fmt(self.done))
        if self.note:
            parts.append(self.note)
        if final:
            parts.append(f"in {_duration(elapsed)}")
        return "  ".join(parts)

    def _draw(self, now: float, final: bool = False) -> None:
        self._last_draw = now
        status = self._status(now, final)
        if self.tty:
            fraction = min(self.done / self.total, 1.0) if self.total else 0.0
            filled = int(BAR_WIDTH * fraction)
            bar = "#" * filled + "-" * (BAR_WIDTH - filled)
            self._write(f"\r\x1b[K{self.title} [{bar}] {status}")
            self._drawn = True
        else:
            self._write(f"{self.title}: {status}\n")

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
