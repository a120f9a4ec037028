from django.urls import path

from studies import download_views, views

app_name = "studies"

urlpatterns = [
    path("", views.query, name="query"),
    path("patient/<int:pk>/", views.patient, name="patient"),
    path("study/<str:uid>/", views.study, name="study"),
    path("study/<str:uid>/reports/", views.report_attach, name="report_attach"),
    path("study/<str:uid>/reports/<int:pk>/", views.report_download, name="report_download"),
    path("series/<str:uid>/", views.series, name="series"),
    path("series/<str:uid>/thumbnail", views.series_thumbnail, name="series_thumbnail"),
    path("patient/<int:pk>/download", download_views.download_patient, name="download_patient"),
    path("study/<str:uid>/download", download_views.download_study, name="download_study"),
    path("series/<str:uid>/download", download_views.download_series, name="download_series"),
]
