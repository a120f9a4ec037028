"""activity.browsers.browser_label: the short browser names of the admin's lists."""

import pytest

from activity.browsers import browser_label


@pytest.mark.parametrize(
    ("agent", "label"),
    [
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91",
            "Edge 120 on Windows",
        ),
        (
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/120.0.0.0 Safari/537.36",
            "Chrome 120 on Linux",
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:121.0) Gecko/20100101 Firefox/121.0",
            "Firefox 121 on macOS",
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1",
            "Safari 17 on iOS",
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/120.0.6099.144 Mobile Safari/537.36",
            "Chrome 120 on Android",
        ),
        ("curl/8.5.0", "curl 8"),
        ("python-requests/2.31.0", "Python 2"),
        ("SomeViewer/3.1 (DICOM)", "SomeViewer/3.1"),
        ("", ""),
    ],
)
def test_browser_label(agent, label):
    assert browser_label(agent) == label
