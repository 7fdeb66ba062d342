"""The /admin/ page (hello/admin.py): it answers and keeps a session."""

from __future__ import annotations

from pathlib import Path

from hello import create_app


def test_admin_page_counts_visits_in_a_session_cookie(tmp_path: Path) -> None:
    app = create_app({"TESTING": True, "APP_ROOT": str(tmp_path)})
    client = app.test_client()
    first = client.get("/admin/")
    assert first.status_code == 200
    assert "Visits in this session: 1" in first.get_data(as_text=True)
    cookie = first.headers["Set-Cookie"]
    assert cookie.startswith("session=")
    for flag in ("Secure", "HttpOnly", "SameSite=Lax"):
        assert flag in cookie
    second = client.get("/admin/")
    assert "Visits in this session: 2" in second.get_data(as_text=True)
