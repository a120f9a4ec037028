"""Normalised text for case- and accent-insensitive matching of names and other free text."""

import unicodedata


def fold(text: str) -> str:
    """Return ``text`` lower-cased with accents removed: ``MÜLLER^Jörg`` -> ``muller^jorg``.

    Compatibility decomposition (NFKD) splits accented letters into a base letter plus combining
    marks, which are dropped; ``casefold`` then handles letters such as German sharp s. Letters
    with no decomposition (``Ø``, ``Ł``) and non-Latin scripts are kept, folded only in case.
    """
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return stripped.casefold().strip()


def fold_person_name(name: str) -> str:
    """Fold a DICOM PN value for search, keeping its ``^`` component and ``=`` group separators.

    Trailing empty components are dropped (``DOE^JOHN^^^`` and ``DOE^JOHN`` are the same name,
    PS3.5 6.2.1), and blanks around components are trimmed.
    """
    groups = []
    for group in name.split("="):
        parts = [p.strip() for p in group.split("^")]
        while parts and not parts[-1]:
            parts.pop()
        groups.append("^".join(parts))
    while groups and not groups[-1]:
        groups.pop()
    return fold("=".join(groups))
