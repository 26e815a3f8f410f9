"""The notes app: a guestbook that exercises every shared service of the cluster."""

from django.apps import AppConfig


class NotesConfig(AppConfig):
    """App config of the guestbook."""

    name = "notes"
    default_auto_field = "django.db.models.BigAutoField"
