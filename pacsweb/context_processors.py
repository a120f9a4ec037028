from django.http import HttpRequest

from pacsweb.models import ServerSetup


def server_setup(request: HttpRequest) -> dict:
    """Every page shows which institution and department the user reached."""
    return {"server_setup": ServerSetup.get()}
