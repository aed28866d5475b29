"""Store URLs and the settings they map to: a password goes to the store and nowhere else."""

from __future__ import annotations

import pytest

from keyledger.adapters.driven.stores import parse_url

PASSWORD = "s3cretpw"


class TestPasswordNeverShown:
    @pytest.mark.parametrize(
        "url",
        [
            f"postgresql://u:{PASSWORD}@127.0.0.1/db",
            f"postgres://u:{PASSWORD}@127.0.0.1:5433/db?schema=acme",
        ],
    )
    def test_repr_and_str_of_the_settings_leave_the_password_out(self, url: str) -> None:
        """repr, str and format of PostgreSQL settings name the store without its password."""
        settings = parse_url(url)

        shown = [repr(settings), str(settings), f"{settings}", repr([settings]), repr({"s": settings})]

        assert settings.env["POSTGRES_PASSWORD"] == PASSWORD  # the store still gets it
        for text in shown:
            assert PASSWORD not in text
            assert "127.0.0.1" in text
