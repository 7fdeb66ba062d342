"""A tiny admin page under ``/admin/``.

In production nginx puts basic auth in front of this path
(``apps[].basic_auth``); the page itself only counts the visits in the
session, so a session cookie is set and its flags can be checked end to end.
"""

from __future__ import annotations

from flask import Blueprint, Flask, render_template_string, session

bp = Blueprint("admin", __name__, url_prefix="/admin")

_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>hello admin</title></head>
<body><h1>Admin</h1><p>Visits in this session: {{ visits }}</p></body>
</html>
"""


@bp.get("/")
def index() -> str:
    session["admin_visits"] = int(session.get("admin_visits", 0)) + 1
    return render_template_string(_PAGE, visits=session["admin_visits"])


def register(app: Flask) -> None:
    """Mount the admin page on ``app``."""
    app.register_blueprint(bp)
