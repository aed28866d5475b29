"""The web console over HTTP (httpx's ASGI transport): every route, every refusal, and
the security properties of issue 13 (CSRF, cookies, headers, escaping, isolation)."""

from __future__ import annotations

import asyncio
import base64
import io
import re
import zipfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyledger import Actor, ExportCheckpoint, IssuedKey, Ledger, Permission, verify_export
from keyledger.adapters.console import console
from keyledger.testing import ManualClock

BASE = "http://console.test"
SCRIPT = "<script>alert(1)</script>"


class Browser:
    """A cookie-keeping client of one ASGI app, driven synchronously."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.cookies = httpx.Cookies()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url=BASE, cookies=self.cookies) as client:
                response = await client.request(method, path, **kwargs)
                self.cookies = client.cookies
                return response

        return asyncio.run(send())

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, data: dict[str, str] | None = None) -> httpx.Response:
        return self.request("POST", path, data=data or {})

    def token(self, path: str = "/") -> str:
        """The CSRF token of the forms on ``path``."""
        found = re.search(r'name="csrf_token" value="([^"]+)"', self.get(path).text)
        assert found is not None, f"no form with a CSRF token on {path}"
        return found.group(1)

    def submit(self, path: str, data: dict[str, str], form_page: str = "/") -> httpx.Response:
        """POST ``data`` with the token of a page, as a person filling its form would."""
        return self.post(path, {"csrf_token": self.token(form_page), **data})


class Acting:
    """The host's authentication, as the console sees it: whoever is signed in now."""

    def __init__(self, actor: Actor | None) -> None:
        self.actor = actor

    def __call__(self, scope: Any) -> Actor | None:
        return self.actor


@pytest.fixture
def acting(admin: Actor) -> Acting:
    return Acting(admin)


@pytest.fixture
def browser(ledger: Ledger, acting: Acting, clock: ManualClock) -> Browser:
    return Browser(console(ledger, actor=acting, api_url="https://api.acme.test/orders", clock=clock))


def shown_key(response: httpx.Response) -> str:
    found = re.search(r'id="new-key" class="mono secret" readonly value="([^"]+)"', response.text)
    assert found is not None, "the page shows no new key"
    return found.group(1)


def recorded(ledger: Ledger) -> int:
    return len(ledger.audit(limit=10_000))


def refused_nothing_recorded(ledger: Ledger, before: int, response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text[:500]
    assert recorded(ledger) == before


class TestSigningIn:
    def test_without_an_actor_the_console_answers_401(self, browser: Browser, acting: Acting) -> None:
        """A request the host has not authenticated gets 401 and no account data."""
        acting.actor = None

        response = browser.get("/")

        assert response.status_code == 401
        assert "Sign in" in response.text
        assert "csrf_token" not in response.text

    def test_without_an_actor_the_console_redirects_to_the_login_url(self, ledger: Ledger) -> None:
        """With ``login_url``, an unauthenticated request is sent there, with the page it asked for."""
        browser = Browser(console(ledger, actor=lambda scope: None, login_url="/login"))

        response = browser.get("/audit")

        assert response.status_code == 303
        assert response.headers["location"] == "/login?next=/audit"


class TestKeysPage:
    def test_it_lists_the_accounts_keys(self, browser: Browser, ledger: Ledger, alice: Actor) -> None:
        """The keys page shows each key's labels, creator, status, hint and last use."""
        issued = ledger.create_key(alice, name="Shipping", purpose="labels", application="ShipStation")

        page = browser.get("/")

        assert page.status_code == 200
        for text in ("Shipping", "labels", "ShipStation", "by alice", "Active", issued.hint, "never used"):
            assert text in page.text

    def test_it_shows_the_keys_as_of_an_instant(
        self, browser: Browser, ledger: Ledger, alice: Actor, clock: ManualClock
    ) -> None:
        """With ``at``, the page shows the keys as they were then."""
        issued = ledger.create_key(alice, name="Shipping")
        before = clock() + timedelta(minutes=1)
        clock.advance(hours=1)
        ledger.revoke_key(alice, issued.key_id)

        now = browser.get("/")
        then = browser.get("/", params={"at": before.strftime("%Y-%m-%dT%H:%M:%S")})

        assert "Revoked" in now.text
        assert then.status_code == 200
        assert "Showing the keys as of" in then.text
        assert "Active" in then.text
        assert "Revoked" not in then.text

    def test_a_bad_as_of_instant_is_refused_with_a_message(self, browser: Browser) -> None:
        """An ``at`` that is not a date and time is a 400 that says what to type."""
        response = browser.get("/", params={"at": "yesterday"})

        assert response.status_code == 400
        assert "not a date and time" in response.text

    def test_it_pages_through_many_keys(self, browser: Browser, ledger: Ledger, alice: Actor) -> None:
        """Fifty keys a page, newest first, with links between pages."""
        for number in range(60):
            ledger.create_key(alice, name=f"key {number:02d}")

        first = browser.get("/")
        second = browser.get("/", params={"page": "2"})

        assert "key 59" in first.text
        assert "key 10" in first.text
        assert "key 09" not in first.text
        assert "key 09" in second.text
        assert "key 00" in second.text
        assert "key 10" not in second.text
        assert "Page 1 of 2" in first.text
        assert 'rel="next"' in first.text

    def test_it_flags_what_the_compliance_report_flags(
        self, browser: Browser, ledger: Ledger, alice: Actor, clock: ManualClock
    ) -> None:
        """A key not regenerated in 90 days carries the report's badge."""
        ledger.create_key(alice, name="Old")
        clock.advance(days=91)

        page = browser.get("/")

        assert "Not regenerated in 90 days" in page.text
        assert "Unused for 30 days" in page.text


class TestAddingAKey:
    def test_the_answer_shows_the_key_once(self, browser: Browser, ledger: Ledger) -> None:
        """The POST's answer (not a redirect) shows a working key, its Basic header and a
        curl line, and tells no cache to keep it."""
        response = browser.submit("/keys", {"name": "Shipping", "purpose": "labels", "application": "Ship"})

        assert response.status_code == 200
        key = shown_key(response)
        principal = ledger.verify(key)
        assert principal is not None
        assert principal.account == "acme"
        header = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
        assert f"Authorization: {header}" in response.text
        assert ledger.verify(header) is not None
        assert f"curl -H &#39;Authorization: {header}&#39; https://api.acme.test/orders" in response.text
        assert response.headers["cache-control"] == "no-store"
        assert "Need help using the API key?" in response.text
        assert "I have stored this key" in response.text

    def test_the_key_is_never_in_a_url_a_cookie_or_another_page(self, browser: Browser) -> None:
        """After it was shown, no page, cookie or header carries the key."""
        response = browser.submit("/keys", {"name": "Shipping"})
        key = shown_key(response)
        key_id = re.search(r"/keys/(key_\w+)", response.text)
        assert key_id is not None

        pages = [browser.get(path) for path in ("/", f"/keys/{key_id.group(1)}", "/audit", "/report")]

        assert key not in str(response.url)
        assert all(key not in value for value in response.headers.values())
        assert all(key not in cookie for cookie in browser.cookies.values())
        assert all(key not in page.text for page in pages)

    def test_a_refused_command_shows_the_ledgers_message_and_records_nothing(
        self, browser: Browser, ledger: Ledger, acting: Acting
    ) -> None:
        """An actor without the integration permission sees why, and nothing is recorded."""
        acting.actor = Actor(user_id="viewer", account="acme", permissions=set())
        before = recorded(ledger)

        response = browser.submit("/keys", {"name": "Shipping"})

        refused_nothing_recorded(ledger, before, response, 403)
        assert "lacks the &#39;integration&#39; permission" in response.text

    def test_bad_input_is_refused_and_the_form_keeps_what_was_typed(
        self, browser: Browser, ledger: Ledger
    ) -> None:
        """A key pasted as a purpose is refused (400) with the ledger's message."""
        key = ledger.create_key(
            Actor(user_id="x", account="other", permissions={Permission.INTEGRATION}), name="n"
        ).secret.get_secret_value()
        before = recorded(ledger)

        response = browser.submit("/keys", {"name": "Shipping", "purpose": key})

        refused_nothing_recorded(ledger, before, response, 400)
        assert "looks like an API key" in response.text
        assert 'value="Shipping"' in response.text


STATE_CHANGING = [
    ("/keys", {"name": "Shipping"}),
    ("/keys/{key_id}/regenerate", {"mode": "grace"}),
    ("/keys/{key_id}/revoke", {"confirm_name": "Existing"}),
    ("/users/bob/revoke", {"expected": "{key_id}"}),
    ("/users/carol/restore", {}),
    ("/audit/integrity", {}),
]


class TestCsrf:
    @pytest.fixture
    def existing(self, ledger: Ledger, bob: Actor, admin: Actor) -> IssuedKey:
        issued = ledger.create_key(bob, name="Existing")
        ledger.revoke_user_access(admin, "carol") if False else None
        return issued

    @pytest.mark.parametrize(("path", "form"), STATE_CHANGING, ids=[p for p, _ in STATE_CHANGING])
    def test_a_post_without_the_token_is_refused_and_records_nothing(
        self, browser: Browser, ledger: Ledger, existing: IssuedKey, path: str, form: dict[str, str]
    ) -> None:
        """Every state-changing form needs its token: without it, 403 and no event."""
        browser.get("/")  # the session exists
        before = recorded(ledger)
        data = {name: value.format(key_id=existing.key_id) for name, value in form.items()}

        response = browser.post(path.format(key_id=existing.key_id), data)

        refused_nothing_recorded(ledger, before, response, 403)
        assert "CSRF token" in response.text

    @pytest.mark.parametrize(("path", "form"), STATE_CHANGING, ids=[p for p, _ in STATE_CHANGING])
    def test_a_token_of_another_session_is_refused(
        self, ledger: Ledger, acting: Acting, existing: IssuedKey, path: str, form: dict[str, str]
    ) -> None:
        """A token is bound to its session: another browser's token does not pass."""
        app = console(ledger, actor=acting)
        attacker, victim = Browser(app), Browser(app)
        stolen = attacker.token()
        victim.get("/")
        before = recorded(ledger)
        data = {name: value.format(key_id=existing.key_id) for name, value in form.items()}

        response = victim.post(path.format(key_id=existing.key_id), {"csrf_token": stolen, **data})

        refused_nothing_recorded(ledger, before, response, 403)

    def test_a_token_without_its_session_cookie_is_refused(self, browser: Browser, ledger: Ledger) -> None:
        """A cross-site request carries no SameSite=Strict cookie: the token alone is refused."""
        token = browser.token()
        browser.cookies = httpx.Cookies()

        response = browser.post("/keys", {"csrf_token": token, "name": "Shipping"})

        refused_nothing_recorded(ledger, 0, response, 403)

    def test_a_token_is_bound_to_the_actor_it_was_shown_to(
        self, browser: Browser, ledger: Ledger, acting: Acting, alice: Actor
    ) -> None:
        """Another user signed in to the same browser session cannot reuse the token."""
        token = browser.token()
        acting.actor = alice

        response = browser.post("/keys", {"csrf_token": token, "name": "Shipping"})

        refused_nothing_recorded(ledger, 0, response, 403)

    def test_a_wrong_token_of_the_right_length_is_refused(self, browser: Browser, ledger: Ledger) -> None:
        """Only the exact token passes."""
        token = browser.token()
        forged = ("A" if token[0] != "A" else "B") + token[1:]

        response = browser.post("/keys", {"csrf_token": forged, "name": "Shipping"})

        refused_nothing_recorded(ledger, 0, response, 403)


PAGES = ["/", "/keys/{key_id}", "/users", "/users/bob/revoke", "/audit", "/report", "/nowhere"]


class TestHeadersAndCookies:
    @pytest.mark.parametrize("path", PAGES)
    def test_every_page_has_the_security_headers(
        self, browser: Browser, ledger: Ledger, bob: Actor, path: str
    ) -> None:
        """CSP without inline script and with frame-ancestors 'none', no referrer, nosniff."""
        key_id = ledger.create_key(bob, name="Existing").key_id

        response = browser.get(path.format(key_id=key_id))

        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy
        assert "unsafe-inline" not in policy
        assert "unsafe-eval" not in policy
        assert "frame-ancestors 'none'" in policy
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-content-type-options"] == "nosniff"

    @pytest.mark.parametrize("path", PAGES[:-1])
    def test_no_page_has_an_inline_script(
        self, browser: Browser, ledger: Ledger, bob: Actor, path: str
    ) -> None:
        """Every script is a file the policy allows; no handler attributes either."""
        key_id = ledger.create_key(bob, name="Existing").key_id

        html = browser.get(path.format(key_id=key_id)).text

        assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
        assert re.findall(r"\son[a-z]+\s*=", html) == []
        assert "style=" not in html

    def test_the_session_cookie_is_httponly_and_samesite_strict(self, browser: Browser) -> None:
        """The one cookie the console sets cannot be read by script or sent cross-site."""
        response = browser.get("/")

        cookie = response.headers["set-cookie"]
        assert cookie.startswith("keyledger_console=")
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        assert "Path=/" in cookie

    def test_the_session_cookie_is_secure_over_https(self, ledger: Ledger, acting: Acting) -> None:
        """Served over HTTPS, the cookie is Secure too."""
        app = console(ledger, actor=acting)

        async def fetch() -> httpx.Response:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="https://c.test"
            ) as c:
                return await c.get("/")

        assert "Secure" in asyncio.run(fetch()).headers["set-cookie"]

    def test_a_static_file_is_served_with_the_headers(self, browser: Browser) -> None:
        """The console's script is a static file (so the policy can forbid inline script)."""
        response = browser.get("/static/console.js")

        assert response.status_code == 200
        assert "clipboard" in response.text
        assert response.headers["x-content-type-options"] == "nosniff"


class TestEscaping:
    def test_what_a_user_typed_shows_as_text_everywhere(
        self, browser: Browser, ledger: Ledger, alice: Actor
    ) -> None:
        """A key named like a script is shown as text on every page that shows it."""
        issued = ledger.create_key(alice, name=SCRIPT, purpose=SCRIPT, application='"><img src=x>')
        ledger.revoke_key(alice, issued.key_id, reason=SCRIPT)

        pages = [browser.get(path).text for path in ("/", f"/keys/{issued.key_id}", "/audit", "/report")]

        for html in pages:
            assert SCRIPT not in html
            assert "<img src=x>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[0]
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[1]

    def test_a_creator_name_in_a_chart_is_escaped(self, browser: Browser, ledger: Ledger) -> None:
        """The report's SVG escapes the creator names it draws."""
        ledger.create_key(
            Actor(user_id="a<b>c", account="acme", permissions={Permission.INTEGRATION}), name="k"
        )

        html = browser.get("/report").text

        assert "a<b>c" not in html
        assert "a&lt;b&gt;c" in html


class TestIsolation:
    def test_one_accounts_actor_never_sees_another_accounts_keys(
        self, browser: Browser, ledger: Ledger, alice: Actor
    ) -> None:
        """Keys, key pages, audit entries, exports and reports stay in the actor's account."""
        other = Actor(user_id="mallory", account="globex", permissions={Permission.INTEGRATION})
        hidden = ledger.create_key(other, name="Globex secret project")
        ledger.create_key(alice, name="Acme key")

        pages = {path: browser.get(path) for path in ("/", "/audit", "/report", "/users")}
        key_page = browser.get(f"/keys/{hidden.key_id}")
        filtered = browser.get("/audit", params={"key": hidden.key_id})
        export = browser.get("/audit/export", params={"format": "jsonl"})

        assert "No entries match" in filtered.text
        for response in pages.values():
            assert "Globex secret project" not in response.text
            assert hidden.key_id not in response.text
            assert "mallory" not in response.text
        assert key_page.status_code == 404
        with zipfile.ZipFile(io.BytesIO(export.content)) as bundle:
            assert all(b"globex" not in bundle.read(name) for name in bundle.namelist())

    def test_commands_on_another_accounts_key_are_refused(
        self, browser: Browser, ledger: Ledger, alice: Actor
    ) -> None:
        """Regenerating or revoking another account's key finds no such key and records nothing."""
        other = Actor(user_id="mallory", account="globex", permissions={Permission.INTEGRATION})
        hidden = ledger.create_key(other, name="Globex")
        before = recorded(ledger)

        regenerate = browser.submit(f"/keys/{hidden.key_id}/regenerate", {"mode": "immediate"})
        revoke = browser.submit(f"/keys/{hidden.key_id}/revoke", {"confirm_name": "Globex"})

        refused_nothing_recorded(ledger, before, regenerate, 404)
        refused_nothing_recorded(ledger, before, revoke, 404)


class TestKeyPage:
    def test_it_shows_the_keys_labels_and_timeline(
        self, browser: Browser, ledger: Ledger, alice: Actor
    ) -> None:
        """Every audit entry that touched the key is on its timeline, newest first."""
        issued = ledger.create_key(alice, name="Shipping", purpose="labels", application="ShipStation")
        ledger.regenerate_key(alice, issued.key_id, mode="grace")

        html = browser.get(f"/keys/{issued.key_id}").text

        timeline = html[html.index('class="timeline"') :]
        assert timeline.index("Regenerated with grace") < timeline.index("Created")
        assert "ShipStation" in html
        assert "labels" in html
        assert "Previous key in grace" in html

    def test_the_regenerate_form_shows_the_grace_deadline(
        self, browser: Browser, ledger: Ledger, alice: Actor, clock: ManualClock
    ) -> None:
        """Before confirming, the form says until when the old key would keep working."""
        issued = ledger.create_key(alice, name="Shipping")

        html = browser.get(f"/keys/{issued.key_id}").text

        assert "Keep it working for 12 hours, until" in html
        assert 'data-grace-seconds="43200"' in html

    def test_regenerating_with_grace_keeps_the_old_key_until_its_deadline(
        self, browser: Browser, ledger: Ledger, alice: Actor, clock: ManualClock
    ) -> None:
        """The new key is shown once; the old one works until the deadline shown, not after."""
        issued = ledger.create_key(alice, name="Shipping")
        old = issued.secret.get_secret_value()

        response = browser.submit(f"/keys/{issued.key_id}/regenerate", {"mode": "grace"})

        assert response.status_code == 200
        new = shown_key(response)
        deadline = clock() + timedelta(hours=12)
        assert deadline.strftime("%Y-%m-%d %H:%M:%S UTC") in response.text
        assert ledger.verify(new) is not None
        clock.advance(hours=12, microseconds=-1)
        assert ledger.verify(old) is not None
        clock.advance(microseconds=1)
        assert ledger.verify(old) is None

    def test_regenerating_immediately_stops_the_old_key(
        self, browser: Browser, ledger: Ledger, alice: Actor
    ) -> None:
        """Immediately: the old key stops at once."""
        issued = ledger.create_key(alice, name="Shipping")

        response = browser.submit(f"/keys/{issued.key_id}/regenerate", {"mode": "immediate"})

        assert "The previous key has stopped working" in response.text
        assert ledger.verify(issued.secret.get_secret_value()) is None
        assert ledger.verify(shown_key(response)) is not None

    def test_regenerating_without_a_mode_records_nothing(
        self, browser: Browser, ledger: Ledger, alice: Actor
    ) -> None:
        """The choice is required."""
        issued = ledger.create_key(alice, name="Shipping")
        before = recorded(ledger)

        response = browser.submit(f"/keys/{issued.key_id}/regenerate", {"mode": "sometime"})

        refused_nothing_recorded(ledger, before, response, 400)

    def test_revoking_needs_the_keys_name(self, browser: Browser, ledger: Ledger, alice: Actor) -> None:
        """A wrong name confirms nothing; the right one revokes with the reason given."""
        issued = ledger.create_key(alice, name="Shipping")
        before = recorded(ledger)

        wrong = browser.submit(f"/keys/{issued.key_id}/revoke", {"confirm_name": "Shiping", "reason": "r"})
        refused_nothing_recorded(ledger, before, wrong, 400)
        right = browser.submit(
            f"/keys/{issued.key_id}/revoke", {"confirm_name": "Shipping", "reason": "leaked"}
        )

        assert right.status_code == 200
        assert ledger.verify(issued.secret.get_secret_value()) is None
        assert ledger.audit(action="KeyRevoked")[0].details["reason"] == "leaked"
        assert "Revoked" in right.text
        assert "never works again" in right.text

    def test_a_command_on_a_revoked_key_shows_the_ledgers_message(
        self, browser: Browser, ledger: Ledger, alice: Actor
    ) -> None:
        """The ledger's refusal is shown (409) and nothing is recorded."""
        issued = ledger.create_key(alice, name="Shipping")
        token = browser.token(f"/keys/{issued.key_id}")
        ledger.revoke_key(alice, issued.key_id)
        before = recorded(ledger)

        response = browser.post(f"/keys/{issued.key_id}/regenerate", {"csrf_token": token, "mode": "grace"})

        refused_nothing_recorded(ledger, before, response, 409)
        assert "was revoked and cannot be changed" in response.text

    def test_an_unknown_key_is_404(self, browser: Browser) -> None:
        """A key id that is not in the account is not found."""
        assert browser.get("/keys/key_AAAAAAAAAAAAAAAA").status_code == 404


class TestUsers:
    def test_the_users_page_needs_user_management(
        self, browser: Browser, ledger: Ledger, acting: Acting, alice: Actor
    ) -> None:
        """Without the permission, 403 with the reason."""
        acting.actor = alice

        response = browser.get("/users")

        assert response.status_code == 403
        assert "user_management" in response.text

    def test_it_lists_creators_and_recipients_with_their_keys(
        self, browser: Browser, ledger: Ledger, alice: Actor, bob: Actor
    ) -> None:
        """A user who only regenerated someone else's key is listed too (they hold its secret)."""
        issued = ledger.create_key(alice, name="Shipping")
        ledger.regenerate_key(bob, issued.key_id, mode="immediate")

        html = browser.get("/users").text

        assert "Shipping" in html
        assert "Revoke access of alice" in html
        assert "Revoke access of bob" in html

    def test_the_preview_shows_exactly_what_revoking_removes(
        self, browser: Browser, ledger: Ledger, alice: Actor, bob: Actor
    ) -> None:
        """The dry run lists the keys the command then removes, and records nothing."""
        created = ledger.create_key(bob, name="Bob's own")
        held = ledger.create_key(alice, name="Alice's, regenerated by Bob")
        ledger.regenerate_key(bob, held.key_id, mode="grace")
        untouched = ledger.create_key(alice, name="Alice's only")
        before = recorded(ledger)

        preview = browser.get("/users/bob/revoke")

        assert recorded(ledger) == before
        assert created.key_id in preview.text
        assert held.key_id in preview.text
        assert untouched.key_id not in preview.text
        confirm = browser.submit(
            "/users/bob/revoke",
            {"expected": f"{created.key_id},{held.key_id}"},
            form_page="/users/bob/revoke",
        )
        assert confirm.status_code == 200
        assert ledger.audit(action="UserAccessRevoked")[0].details["removed_key_ids"] == [
            created.key_id,
            held.key_id,
        ]
        assert "Access revoked" in confirm.text

    def test_a_confirmation_of_a_stale_preview_records_nothing(
        self, browser: Browser, ledger: Ledger, bob: Actor
    ) -> None:
        """If the keys changed since the preview, nothing happens and the new list is shown."""
        first = ledger.create_key(bob, name="First")
        token = browser.token("/users/bob/revoke")
        second = ledger.create_key(bob, name="Second")
        before = recorded(ledger)

        response = browser.post("/users/bob/revoke", {"csrf_token": token, "expected": first.key_id})

        refused_nothing_recorded(ledger, before, response, 409)
        assert second.key_id in response.text

    def test_revoking_your_own_access_shows_the_ledgers_message(
        self, browser: Browser, ledger: Ledger
    ) -> None:
        """The ledger refuses it; the page says so and nothing is recorded."""
        response = browser.get("/users/root/revoke")

        assert response.status_code == 403
        assert "cannot revoke their own access" in response.text
        assert recorded(ledger) == 0

    def test_access_can_be_restored(self, browser: Browser, ledger: Ledger, admin: Actor, bob: Actor) -> None:
        """A revoked user is listed as such and can be restored."""
        ledger.create_key(bob, name="Bob's")
        ledger.revoke_user_access(admin, "bob")
        assert "Restore access of bob" in browser.get("/users").text

        response = browser.submit("/users/bob/restore", {}, form_page="/users")

        assert response.status_code == 200
        assert ledger.audit(action="UserAccessRestored")[0].details["user_id"] == "bob"
        assert "Revoke access of bob" in response.text


class TestAuditTrail:
    @pytest.fixture
    def history(self, ledger: Ledger, alice: Actor, bob: Actor) -> list[str]:
        keys = [ledger.create_key(alice if n % 2 else bob, name=f"k{n}").key_id for n in range(60)]
        for key_id in keys[:10]:
            ledger.revoke_key(alice, key_id)
        return keys

    def test_it_filters_by_action_actor_and_key(self, browser: Browser, history: list[str]) -> None:
        """Each filter narrows the entries shown."""
        revoked = browser.get("/audit", params={"action": "KeyRevoked"})
        by_key = browser.get("/audit", params={"key": history[0]})
        by_actor = browser.get("/audit", params={"actor": "bob", "action": "KeyCreated"})

        assert revoked.text.count("<td>KeyRevoked</td>") == 10
        assert "<td>KeyCreated</td>" not in revoked.text
        assert by_key.text.count(f">{history[0]}</span>") == 2
        assert by_actor.text.count("<td>bob</td>") == 30
        assert "<td>alice</td>" not in by_actor.text

    def test_it_filters_by_time(
        self, browser: Browser, ledger: Ledger, alice: Actor, clock: ManualClock
    ) -> None:
        """since and until bound the entries' effective time."""
        ledger.create_key(alice, name="Early")
        clock.advance(days=2)
        middle = clock()
        ledger.create_key(alice, name="Late")

        html = browser.get("/audit", params={"since": middle.strftime("%Y-%m-%dT%H:%M:%S")}).text

        assert "Late" in html
        assert "Early" not in html

    def test_it_pages_with_a_cursor(self, browser: Browser, history: list[str]) -> None:
        """Pages follow each other by position: nothing skipped, nothing repeated."""
        positions: list[int] = []
        path = "/audit"
        while True:
            html = browser.get(path).text
            positions += [int(p) for p in re.findall(r"<tr>\s*<td>(\d+)</td>", html)]
            found = re.search(r'href="(/audit\?[^"]*after=\d+)" rel="next"', html)
            if found is None:
                break
            path = found.group(1).replace("&amp;", "&")

        assert positions == list(range(1, 71))

    @pytest.mark.parametrize("form_format", ["jsonl", "csv"])
    def test_the_download_verifies_against_its_checkpoint(
        self, browser: Browser, history: list[str], tmp_path: Path, form_format: str
    ) -> None:
        """The zip holds the export and its checkpoint, and verify_export accepts them."""
        response = browser.get("/audit/export", params={"format": form_format, "action": "KeyRevoked"})

        assert response.status_code == 200
        assert response.headers["content-type"] == "application/zip"
        assert response.headers["content-disposition"].startswith('attachment; filename="audit-acme-')
        with zipfile.ZipFile(io.BytesIO(response.content)) as bundle:
            bundle.extractall(tmp_path)
        (export,) = tmp_path.glob(f"*.{form_format}")
        (checkpoint,) = tmp_path.glob("*.checkpoint.json")
        report = verify_export(export, ExportCheckpoint.model_validate_json(checkpoint.read_text()))
        assert report.ok
        assert report.lines_checked == 10

    def test_a_tampered_download_fails_verification(
        self, browser: Browser, history: list[str], tmp_path: Path
    ) -> None:
        """An edited line is caught by verify_export (the checkpoint means something)."""
        response = browser.get("/audit/export", params={"format": "jsonl"})
        with zipfile.ZipFile(io.BytesIO(response.content)) as bundle:
            bundle.extractall(tmp_path)
        (export,) = tmp_path.glob("*.jsonl")
        export.write_text(export.read_text().replace('"k3"', '"k4"', 1))
        (checkpoint,) = tmp_path.glob("*.checkpoint.json")

        assert not verify_export(export, ExportCheckpoint.model_validate_json(checkpoint.read_text())).ok

    def test_the_integrity_check_shows_its_result(self, browser: Browser, history: list[str]) -> None:
        """The check runs on demand and says how many events it checked."""
        response = browser.submit("/audit/integrity", {}, form_page="/audit")

        assert response.status_code == 200
        assert "Intact." in response.text
        assert "70 events checked" in response.text

    def test_an_unknown_action_is_refused(self, browser: Browser) -> None:
        """Filters are checked: an unknown action is a 400 naming the known ones."""
        response = browser.get("/audit", params={"action": "KeyStolen"})

        assert response.status_code == 400
        assert "KeyCreated" in response.text


class TestReport:
    def test_it_shows_the_report_with_three_charts(
        self, browser: Browser, ledger: Ledger, alice: Actor, bob: Actor
    ) -> None:
        """Per month, per creator and in grace over time, each an SVG with a title and a table."""
        issued = ledger.create_key(alice, name="Shipping")
        ledger.create_key(bob, name="Billing")
        ledger.regenerate_key(alice, issued.key_id, mode="grace")

        html = browser.get("/report").text

        assert html.count('<svg xmlns="http://www.w3.org/2000/svg"') == 3
        assert html.count('role="img"') == 3
        for title in ("per month", "Active keys per creator", "Secrets in grace over time"):
            assert title in html
        assert "<td>alice</td><td>1</td>" in html
        ids = re.findall(r'\sid="([^"]+)"', html)
        assert len(ids) == len(set(ids))


def test_the_published_path_is_the_console_itself() -> None:
    """``keyledger.adapters.console.console`` is the driving adapter's function."""
    from keyledger.adapters.driving.console import console as driving_console

    assert console is driving_console


Serve = Callable[[Any], httpx.Client]
