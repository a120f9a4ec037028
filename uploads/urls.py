from django.urls import path

from uploads import views

app_name = "uploads"

urlpatterns = [
    path("", views.upload, name="upload"),
    path("<int:pk>/", views.result, name="result"),
]
