from django.urls import include, path, register_converter

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

# Nested by path prefix, so that resolving a frame request (hundreds per study in a viewer)
# tries a few prefixes instead of every pattern; frames come first among an instance's routes.
instance_patterns = [
    path("/frames/<str:frame_list>", views.frames, name="frames"),
    path("", views.instance, name="instance"),
    path("/metadata", views.instance_metadata, name="instance_metadata"),
    path("/bulk/<tag:tag>", views.bulk, name="bulk"),
]
series_patterns = [
    path("/instances/<uid:sop_uid>", include(instance_patterns)),
    path("", views.series, name="series"),
    path("/metadata", views.series_metadata, name="series_metadata"),
    path("/instances", views.series_instances, name="series_instances"),
]
study_patterns = [
    path("/series/<uid:series_uid>", include(series_patterns)),
    path("", views.study, name="study"),
    path("/metadata", views.study_metadata, name="study_metadata"),
    path("/series", views.study_series, name="study_series"),
    path("/instances", views.study_instances, name="study_instances"),
]
dicomweb_patterns = [
    path("studies/<uid:study_uid>", include(study_patterns)),
    path("studies", views.studies, name="studies"),
    path("series", views.all_series, name="all_series"),
    path("instances", views.all_instances, name="all_instances"),
]

urlpatterns = [
    path("dicomweb/", include(dicomweb_patterns)),
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
