from django.urls import path

from studies import download_views, views

app_name = "studies"

urlpatterns = [
    path("", views.query, name="query"),
    path("patient/<int:pk>/download", download_views.download_patient, name="download_patient"),
    path("study/<str:uid>/download", download_views.download_study, name="download_study"),
    path("series/<str:uid>/download", download_views.download_series, name="download_series"),
]
