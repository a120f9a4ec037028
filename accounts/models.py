from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    """A web user (a remote physician) or, with ``is_staff``, an admin.

    Web users never reach the admin; admins use it to manage the server.
    """

    real_name = models.CharField(max_length=150, blank=True, default="")
    contact = models.TextField(
        "contact details", blank=True, default="", help_text="Phone, e-mail, address."
    )
    can_upload = models.BooleanField(
        "can upload files",
        default=False,
        help_text="May upload DICOM files, zips and HL7 orders.",
    )

    def __str__(self) -> str:
        return self.real_name or self.username
