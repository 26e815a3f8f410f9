"""URLs of the guestbook and the operational endpoints."""

from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="index"),
    path("api/notes", views.api_notes, name="api-notes"),
    path("me", views.me, name="me"),
    path("cached", views.cached, name="cached"),
    path("upload", views.upload, name="upload"),
    path("healthz", views.healthz, name="healthz"),
    path("whoami", views.whoami, name="whoami"),
    path("slow", views.slow, name="slow"),
]
