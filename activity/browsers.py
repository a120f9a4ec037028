"""A short name for the program behind a User-Agent header, for the admin's lists."""

import re

# Order matters: Edge and Opera also claim to be Chrome, Chrome also claims to be Safari, and
# every browser claims to be Mozilla.
_PROGRAMS = [
    ("Edge", re.compile(r"Edg(?:e|A|iOS)?/(\d+)")),
    ("Opera", re.compile(r"OPR/(\d+)")),
    ("Firefox", re.compile(r"Firefox/(\d+)")),
    ("Chrome", re.compile(r"(?:Chrome|CriOS)/(\d+)")),
    ("Safari", re.compile(r"Version/(\d+)[.\d]* (?:Mobile/\S+ )?Safari/")),
    ("Weasis", re.compile(r"Weasis/(\d+)")),
    ("curl", re.compile(r"curl/(\d+)")),
    ("Python", re.compile(r"python-requests/(\d+)|Python-urllib/(\d+)")),
]
_SYSTEMS = [
    ("Android", "Android"),
    ("iPhone", "iOS"),
    ("iPad", "iOS"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("Linux", "Linux"),
]


def browser_label(user_agent: str) -> str:
    """``Mozilla/5.0 (Windows NT 10.0; ...) Chrome/120.0 ...`` -> ``Chrome 120 on Windows``.

    Unknown programs are shown as their header's first word, so nothing is hidden from the admin.
    """
    if not user_agent:
        return ""
    program = ""
    for name, pattern in _PROGRAMS:
        match = pattern.search(user_agent)
        if match:
            version = next((g for g in match.groups() if g), "")
            program = f"{name} {version}".strip()
            break
    if not program:
        program = user_agent.split()[0][:40]
    system = next((label for token, label in _SYSTEMS if token in user_agent), "")
    return f"{program} on {system}" if system else program
