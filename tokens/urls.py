from django.urls import path

from tokens import views

app_name = "tokens"

urlpatterns = [
    # The token is the whole query string: /token?TOKEN.
    path("token", views.patient_page, name="patient_page"),
    path("token/zip", views.patient_zip, name="patient_zip"),
    path("token/report/<int:report_id>", views.patient_report, name="patient_report"),
    path("studies/study/<str:study_uid>/patient-link", views.patient_link, name="patient_link"),
    path("studies/study/<str:study_uid>/handout", views.handout, name="handout"),
]
