"""Create the demo user `demo` when EXAMPLEAPP_DEMO_PASSWORD is set at migration time.

A deployment sets the variable (from its secrets) for the one `migrate` run that applies this
migration; without it no demo account exists.
"""

import os

from django.contrib.auth.hashers import make_password
from django.db import migrations


def create_demo_user(apps, schema_editor) -> None:
    password = os.environ.get("EXAMPLEAPP_DEMO_PASSWORD", "")
    if not password:
        return
    user_model = apps.get_model("auth", "User")
    user_model.objects.get_or_create(username="demo", defaults={"password": make_password(password)})


def remove_demo_user(apps, schema_editor) -> None:
    apps.get_model("auth", "User").objects.filter(username="demo").delete()


class Migration(migrations.Migration):
    dependencies = [("notes", "0001_initial"), ("auth", "0012_alter_user_first_name_max_length")]

    operations = [migrations.RunPython(create_demo_user, remove_demo_user)]
