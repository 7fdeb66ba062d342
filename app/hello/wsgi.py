"""WSGI entry point for gunicorn: ``gunicorn hello.wsgi:app``.

Run it from the app root (the directory that contains the ``hello`` package).
"""

from hello import create_app

app = create_app()
