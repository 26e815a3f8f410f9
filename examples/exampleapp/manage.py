#!/usr/bin/env python3
"""Django's command-line utility for the example project."""

import os
import sys


def main() -> None:
    """Run a management command with the project's settings unless others are chosen."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exampleapp.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
