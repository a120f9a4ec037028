from django.apps import AppConfig


class PacswebConfig(AppConfig):
    name = "pacsweb"
    verbose_name = "Server"
