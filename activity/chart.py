"""Bar geometry for the activity page's hourly chart, drawn by the template as inline SVG.

The chart is a handful of rectangles computed here, so the page needs no JavaScript library and
the numbers behind every bar can be tested.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.template.defaultfilters import filesizeformat

from activity.selectors import HourBucket

SLOT = 20
BAR = 14
HEIGHT = 80


@dataclass(frozen=True)
class Bar:
    x: int
    y: float
    width: int
    height: float
    label: str
    title: str


@dataclass(frozen=True)
class Chart:
    title: str
    total: str
    peak: str
    width: int
    height: int
    bars: list[Bar]


def _chart(
    buckets: Sequence[HourBucket],
    *,
    title: str,
    value: Callable[[HourBucket], int],
    text: Callable[[int], str],
) -> Chart:
    values = [value(b) for b in buckets]
    top = max(values, default=0) or 1
    bars = []
    for i, (bucket, v) in enumerate(zip(buckets, values, strict=True)):
        height = HEIGHT * v / top
        # An empty hour still gets a hairline, so the time axis reads as continuous.
        shown = max(height, 1.0)
        hour = f"{bucket.start:%H}:00"
        bars.append(
            Bar(
                x=i * SLOT + (SLOT - BAR) // 2,
                y=round(HEIGHT - shown, 1),
                width=BAR,
                height=round(shown, 1),
                label=hour if i % 6 == 0 else "",
                title=f"{hour}: {text(v)}",
            )
        )
    return Chart(
        title=title,
        total=text(sum(values)),
        peak=text(max(values, default=0)),
        width=SLOT * len(buckets),
        height=HEIGHT,
        bars=bars,
    )


def hourly_charts(buckets: Sequence[HourBucket]) -> list[Chart]:
    """The two charts of the activity page: new connections and bytes served, per hour."""
    return [
        _chart(
            buckets,
            title="New connections per hour",
            value=lambda b: b.connections,
            text=lambda n: f"{n} connection{'s' if n != 1 else ''}",
        ),
        _chart(
            buckets,
            title="Bytes served per hour",
            value=lambda b: b.bytes_sent,
            text=lambda n: str(filesizeformat(n)).replace("\xa0", " "),
        ),
    ]
