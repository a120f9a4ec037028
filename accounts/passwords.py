"""How strong a password is, beyond the hard rules of ``AUTH_PASSWORD_VALIDATORS``.

The validators refuse passwords that are too short or too common. A password that passes them
may still be weak; the admin is told so (and may keep it), as the seed's user dialog did.
"""

import string


def password_weaknesses(password: str) -> list[str]:
    """What a strong password has and ``password`` lacks, in words; empty when it is strong."""
    missing = []
    if not any(c.islower() for c in password):
        missing.append("no lower-case letter")
    if not any(c.isupper() for c in password):
        missing.append("no upper-case letter")
    if not any(c.isdigit() for c in password):
        missing.append("no digit")
    if not any(c in string.punctuation or c.isspace() or not c.isalnum() for c in password):
        missing.append("no symbol")
    return missing


def weak_password_message(username: str, password: str) -> str:
    """The admin's notice for a weak password, or "" for a strong one."""
    missing = password_weaknesses(password)
    if not missing:
        return ""
    return (
        f"The password of {username} is weak: it has {', '.join(missing)}. A strong password "
        "mixes upper- and lower-case letters, digits and symbols."
    )
