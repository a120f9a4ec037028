"""tokens.derivation: the token's format, its randomness, and the key kept outside the database."""

import os
import stat
from collections import Counter

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from tokens import services
from tokens.derivation import TOKEN_LENGTH, derive_token, is_well_formed, server_key, token_digest
from tokens.models import StudyToken


@pytest.fixture
def key_file(settings, tmp_path):
    settings.TOKEN_KEY = ""
    settings.TOKEN_KEY_FILE = tmp_path / "keys" / "token_key"
    return settings.TOKEN_KEY_FILE


def test_token_has_64_characters_from_the_alphabet():
    token = derive_token(study_uid="1.2.3", generation=1)
    assert len(token) == TOKEN_LENGTH == 64
    assert is_well_formed(token)
    assert token.isascii() and token.isalnum()


def test_token_is_stable_for_a_study_and_generation():
    assert derive_token(study_uid="1.2.3", generation=1) == derive_token(
        study_uid="1.2.3", generation=1
    )


def test_tokens_differ_between_studies_and_generations():
    tokens = {
        derive_token(study_uid=f"1.2.826.0.1.{n}", generation=g)
        for n in range(1500)
        for g in (1, 2)
    }
    assert len(tokens) == 3000


def test_tokens_use_the_whole_alphabet_evenly():
    # 64,000 characters from 1,000 tokens: each of the 62 symbols is expected about 1,032 times.
    counts = Counter(
        "".join(derive_token(study_uid=f"2.25.{n}", generation=1) for n in range(1000))
    )
    assert len(counts) == 62
    assert min(counts.values()) > 800 and max(counts.values()) < 1300


def test_malformed_texts_are_not_tokens():
    good = derive_token(study_uid="1.2.3", generation=1)
    assert not is_well_formed(good[:-1])
    assert not is_well_formed(good + "A")
    assert not is_well_formed(good[:-1] + "-")
    assert not is_well_formed(good[:-1] + "é")
    assert not is_well_formed("")


def test_key_file_is_created_once_private(key_file):
    first = server_key()
    assert key_file.exists()
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert len(first) >= 64
    assert server_key() == first
    assert [p.name for p in key_file.parent.iterdir()] == ["token_key"], "no temporary file left"


def test_existing_key_file_is_used(key_file):
    key_file.parent.mkdir()
    key_file.write_text("k" * 40 + "\n")
    assert server_key() == b"k" * 40


def test_damaged_key_file_fails_loudly(key_file):
    key_file.parent.mkdir()
    key_file.write_text("short")
    with pytest.raises(ImproperlyConfigured, match="damaged"):
        server_key()


def test_key_from_the_environment_wins(settings, key_file):
    settings.TOKEN_KEY = "e" * 48
    assert server_key() == b"e" * 48
    assert not key_file.exists()


def test_short_key_from_the_environment_is_refused(settings):
    settings.TOKEN_KEY = "too-short"
    with pytest.raises(ImproperlyConfigured, match="at least 32"):
        server_key()


def test_another_key_gives_other_tokens(settings):
    settings.TOKEN_KEY = "a" * 40
    first = derive_token(study_uid="1.2.3", generation=1)
    settings.TOKEN_KEY = "b" * 40
    assert derive_token(study_uid="1.2.3", generation=1) != first


def test_database_holds_no_token(make_study):
    """A copy of the database alone must not give a working link: no column holds the token."""
    study = make_study()
    _row, token = services.token_ensure(study=study)
    row = StudyToken.objects.get(study=study)
    assert row.digest == token_digest(token) != token
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {StudyToken._meta.db_table}")  # noqa: S608 - fixed name.
        values = [str(v) for record in cursor.fetchall() for v in record]
    assert not any(token in value for value in values)
