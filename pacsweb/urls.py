from django.contrib import admin
from django.urls import include, path

from pacsweb import views

urlpatterns = [
    path("", views.landing, name="landing"),
    path("", include("accounts.urls")),
    path("studies/", include("studies.urls")),
    path("upload/", include("uploads.urls")),
    path("", include("tokens.urls")),
    path("", include("dicomweb.urls")),
    path("admin/", admin.site.urls),
    path("health", views.health, name="health"),
]
