"""Who may reach which studies through DICOMweb, WADO-URI and the viewers.

Three kinds of caller: a logged-in web user (every study), a patient whose token granted this
session one study (that study only, re-validated on every request by ``tokens``), and Weasis,
which has no browser session and presents a short-lived signed credential scoped to the study or
series UIDs of the manifest it was given. Every view resolves its caller to a ``Scope`` first;
a caller outside the scope gets exactly what a missing object gets (404), so nothing leaks.
"""

import threading
from collections import OrderedDict
from dataclasses import dataclass

from django.core import signing
from django.db.models import QuerySet
from django.http import HttpRequest, JsonResponse

from studies import storage
from studies.models import Instance, Series, Study
from tokens.access import granted_study_uid

WEASIS_SALT = "pacsweb.dicomweb.weasis"
WEASIS_MAX_AGE = 2 * 3600


@dataclass(frozen=True)
class Scope:
    """What a request may see: every study (a web user) or only the listed ones."""

    user: object | None = None
    study_uids: frozenset[str] | None = None
    series_uids: frozenset[str] | None = None

    @property
    def is_user(self) -> bool:
        return self.user is not None

    @property
    def can_upload(self) -> bool:
        return bool(self.user is not None and getattr(self.user, "can_upload", False))

    def studies(self, queryset: QuerySet[Study] | None = None) -> QuerySet[Study]:
        queryset = Study.objects.all() if queryset is None else queryset
        if self.study_uids is not None:
            queryset = queryset.filter(study_uid__in=self.study_uids)
        return queryset

    def allows_study(self, study_uid: str) -> bool:
        return self.study_uids is None or study_uid in self.study_uids

    def allows_series(self, study_uid: str, series_uid: str) -> bool:
        if not self.allows_study(study_uid):
            return False
        return self.series_uids is None or series_uid in self.series_uids


def scope_for(request: HttpRequest) -> Scope | None:
    """The caller's scope from its session: a web user, a patient's token, or None."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_active:
        return Scope(user=user)
    study_uid = token_study_uid(request)
    if study_uid:
        return Scope(study_uids=frozenset([study_uid]))
    return None


def token_study_uid(request: HttpRequest) -> str | None:
    """The study a patient's link granted this session, re-validated by ``tokens`` each call."""
    return granted_study_uid(request)


def weasis_credential(*, study_uids: list[str], series_uids: list[str] | None = None) -> str:
    """A signed credential that lets Weasis fetch these studies (or only these series) for 2 h.

    Its alphabet (URL-safe base64 and ``:``) never holds ``$``, which would split Weasis's
    launch command, nor ``+`` or ``&``, which would change a query string.
    """
    payload = {"st": sorted(study_uids)}
    if series_uids is not None:
        payload["se"] = sorted(series_uids)
    return signing.dumps(payload, salt=WEASIS_SALT, compress=True)


def scope_from_weasis_credential(credential: str) -> Scope | None:
    try:
        payload = signing.loads(credential, salt=WEASIS_SALT, max_age=WEASIS_MAX_AGE)
    except signing.BadSignature:
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("st"), list):
        return None
    series = payload.get("se")
    return Scope(
        study_uids=frozenset(str(uid) for uid in payload["st"]),
        series_uids=frozenset(str(uid) for uid in series) if isinstance(series, list) else None,
    )


def json_error(status: int, message: str, **headers: str) -> JsonResponse:
    """Errors are JSON with a message a person can act on; never a redirect to a login page."""
    response = JsonResponse({"error": message}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def unauthenticated() -> JsonResponse:
    return json_error(
        401,
        "Log in to pacsweb (or open your patient link) before using DICOMweb.",
        WWW_Authenticate='Session realm="pacsweb"',
    )


def not_found(what: str = "No such study, series or instance.") -> JsonResponse:
    return json_error(404, what)


def study_in_scope(scope: Scope, study_uid: str) -> Study | None:
    if not scope.allows_study(study_uid):
        return None
    return Study.objects.select_related("patient").filter(study_uid=study_uid).first()


def series_in_scope(scope: Scope, study_uid: str, series_uid: str) -> Series | None:
    if not scope.allows_series(study_uid, series_uid):
        return None
    return (
        Series.objects.select_related("study__patient")
        .filter(series_uid=series_uid, study__study_uid=study_uid)
        .first()
    )


def instance_in_scope(
    scope: Scope, study_uid: str, series_uid: str, sop_uid: str
) -> Instance | None:
    if not scope.allows_series(study_uid, series_uid):
        return None
    instances = Instance.objects.select_related("series__study").filter(
        sop_uid=sop_uid, series__series_uid=series_uid, series__study__study_uid=study_uid
    )
    return next(iter(instances[:1]), None)


class _FrameSources:
    """Recently used instances of frame requests, by (study, series, SOP instance) UID.

    A viewer asks for every frame of a study one request at a time; an archived instance never
    changes, so its row is read once. Only found instances are kept (a new one may arrive any
    moment), a bounded number of them, and one whose file has gone is read again.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[tuple[str, str, str], Instance] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple[str, str, str], fields: tuple[str, ...]) -> Instance | None:
        with self.lock:
            instance = self.items.get(key)
            if instance is not None:
                self.items.move_to_end(key)
        if instance is not None and storage.absolute(instance.path).is_file():
            return instance
        instances = Instance.objects.filter(
            sop_uid=key[2], series__series_uid=key[1], series__study__study_uid=key[0]
        ).only(*fields)
        instance = next(iter(instances[:1]), None)
        with self.lock:
            if instance is None:
                self.items.pop(key, None)
            else:
                self.items[key] = instance
                while len(self.items) > self.size:
                    self.items.popitem(last=False)
        return instance


_frame_sources = _FrameSources(size=4096)


def frame_source_in_scope(
    scope: Scope, study_uid: str, series_uid: str, sop_uid: str, *, fields: tuple[str, ...]
) -> Instance | None:
    """The instance whose frames are asked for, if the scope allows it (rows read once)."""
    if not scope.allows_series(study_uid, series_uid):
        return None
    return _frame_sources.get((study_uid, series_uid, sop_uid), fields)
