"""The guestbook's one table."""

from django.db import models


class Note(models.Model):
    """A message left in the guestbook, with who wrote it and which app host stored it."""

    text = models.CharField(max_length=500)
    author = models.CharField(max_length=150, default="anonymous")
    host = models.CharField(max_length=255)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return f"{self.author}: {self.text[:40]}"

    def as_dict(self) -> dict[str, object]:
        """The note as the JSON API returns it."""
        return {
            "id": self.pk,
            "text": self.text,
            "author": self.author,
            "host": self.host,
            "created": self.created.isoformat(),
        }
