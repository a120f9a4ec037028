from django.urls import path, register_converter

from dicomweb import ohif_views, views, weasis_views


class UidConverter:
    """A DICOM UID (PS3.5 9.1): digits and dots, at most 64 characters."""

    regex = r"[0-9][0-9.]{0,63}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


class TagConverter:
    regex = r"[0-9A-Fa-f]{8}"

    def to_python(self, value: str) -> str:
        return value.upper()

    def to_url(self, value: str) -> str:
        return value


register_converter(UidConverter, "uid")
register_converter(TagConverter, "tag")

app_name = "dicomweb"

ST = "dicomweb/studies/<uid:study_uid>"
SE = ST + "/series/<uid:series_uid>"
IN = SE + "/instances/<uid:sop_uid>"

urlpatterns = [
    # First: a viewer asks for each frame of a study in its own request, so these are resolved
    # hundreds of times more often than any other route (Django tries patterns in order).
    path(IN + "/frames/<str:frame_list>", views.frames, name="frames"),
    path("dicomweb/studies", views.studies, name="studies"),
    path("dicomweb/series", views.all_series, name="all_series"),
    path("dicomweb/instances", views.all_instances, name="all_instances"),
    path(ST, views.study, name="study"),
    path(ST + "/metadata", views.study_metadata, name="study_metadata"),
    path(ST + "/series", views.study_series, name="study_series"),
    path(ST + "/instances", views.study_instances, name="study_instances"),
    path(SE, views.series, name="series"),
    path(SE + "/metadata", views.series_metadata, name="series_metadata"),
    path(SE + "/instances", views.series_instances, name="series_instances"),
    path(IN, views.instance, name="instance"),
    path(IN + "/metadata", views.instance_metadata, name="instance_metadata"),
    path(IN + "/bulk/<tag:tag>", views.bulk, name="bulk"),
    path("wado", views.wado_uri, name="wado"),
    path("ohif", ohif_views.ohif_root_redirect, name="ohif_root"),
    path("ohif/app-config.js", ohif_views.app_config, name="ohif_config"),
    path("ohif/", ohif_views.ohif_file, {"path": ""}, name="ohif"),
    path("ohif/<path:path>", ohif_views.ohif_file, name="ohif_file"),
    path("weasis/launch/patient/<int:pk>", weasis_views.launch_patient, name="weasis_patient"),
    path("weasis/launch/study/<uid:study_uid>", weasis_views.launch_study, name="weasis_study"),
    path("weasis/launch/series/<uid:series_uid>", weasis_views.launch_series, name="weasis_series"),
    path("weasis/launch/token", weasis_views.launch_token, name="weasis_token"),
    path("weasis/manifest/<str:credential>", weasis_views.manifest, name="weasis_manifest"),
]
