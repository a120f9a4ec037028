"""Writes of patient links: produce a study's token, revoke, regenerate, extend; count failures.

Views, the admin, the ``study_token`` command and tests all call these functions.
"""

import datetime

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from studies.models import Study
from tokens.derivation import derive_token, token_digest
from tokens.models import FailureCounter, StudyToken


def token_ensure(*, study: Study) -> tuple[StudyToken, str]:
    """Return the study's link row and its current token, writing the row on first use.

    When the stored digest no longer matches (the server key was replaced, for instance after a
    suspected leak or when a lost key file was regenerated), the row follows the key: the old
    links stop working and the new one opens the study.
    """
    row = StudyToken.objects.filter(study=study).first()
    if row is None:
        token = derive_token(study_uid=study.study_uid, generation=1)
        try:
            with transaction.atomic():
                row = StudyToken.objects.create(
                    study=study, digest=token_digest(token), generation=1
                )
        except IntegrityError:
            # Another request produced the same study's first link at the same moment.
            row = StudyToken.objects.get(study=study)
        else:
            return row, token
    token = derive_token(study_uid=study.study_uid, generation=row.generation)
    digest = token_digest(token)
    if row.digest != digest:
        row.digest = digest
        row.save(update_fields=["digest"])
    # The caller's study object (often with its patient already loaded) saves a query.
    row.study = study
    return row, token


def token_revoke(*, study: Study) -> None:
    """Withdraw the study's link: it stops working at once, until it is regenerated."""
    token_ensure(study=study)
    StudyToken.objects.filter(study=study, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )


@transaction.atomic
def token_regenerate(*, study: Study) -> str:
    """Give the study a new token (the old link stops working at once); return the new token."""
    token_ensure(study=study)
    row = StudyToken.objects.select_for_update().get(study=study)
    generation = row.generation + 1
    token = derive_token(study_uid=study.study_uid, generation=generation)
    StudyToken.objects.filter(pk=row.pk).update(
        generation=generation, digest=token_digest(token), revoked_at=None
    )
    return token


def token_extend(*, study: Study, through: datetime.date | None) -> None:
    """Let the study's link work at least until the end of ``through`` (None: no extension)."""
    token_ensure(study=study)
    StudyToken.objects.filter(study=study).update(extended_through=through)


def failure_record(*, key: str, window: datetime.timedelta) -> None:
    """Count one wrong answer for ``key``; a window older than ``window`` starts over."""
    now = timezone.now()
    with transaction.atomic():
        # Old windows are dropped as new failures come in, so the table stays as small as the
        # number of addresses that failed recently.
        FailureCounter.objects.filter(window_started_at__lte=now - window).exclude(key=key).delete()
        counter, created = FailureCounter.objects.select_for_update().get_or_create(
            key=key, defaults={"window_started_at": now, "failures": 1}
        )
        if created:
            return
        if counter.window_started_at <= now - window:
            counter.window_started_at = now
            counter.failures = 1
            counter.save(update_fields=["window_started_at", "failures"])
        else:
            FailureCounter.objects.filter(pk=counter.pk).update(failures=F("failures") + 1)


def failures_clear(*, key: str) -> None:
    FailureCounter.objects.filter(key=key).delete()
