"""pacsweb.lib.person_names.display_person_name, as the patient page and handout show names."""

import pytest

from pacsweb.lib.person_names import display_person_name


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("DOE^JOHN", "DOE, JOHN"),
        ("DOE^JOHN^A^DR^JR", "DR DOE, JOHN A JR"),
        ("MÜLLER^ANNA^^^", "MÜLLER, ANNA"),
        ("DOE", "DOE"),
        ("^JOHN", "JOHN"),
        ("=山田^太郎", "山田, 太郎"),
        ("", ""),
    ],
)
def test_display(value, shown):
    assert display_person_name(value) == shown
