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


def display_person_name(name: str) -> str:
    """Return a DICOM PN value as people read it: ``DOE^JOHN^A^DR`` -> ``DR DOE, JOHN A``.

    The first non-empty component group is shown (alphabetic, else ideographic, else phonetic,
    PS3.5 6.2.1.2); components are family, given, middle, prefix and suffix.
    """
    group = next((g for g in name.split("=") if g.strip("^ ")), "")
    family, given, middle, prefix, suffix = ([p.strip() for p in group.split("^")] + [""] * 5)[:5]
    first_names = " ".join(p for p in (given, middle) if p)
    core = ", ".join(p for p in (family, first_names) if p)
    return " ".join(p for p in (prefix, core, suffix) if p)
