"""The console in a real browser (Chromium through Playwright): the whole lifecycle as a
person clicks it, the same by keyboard alone, an axe-core audit of every page against
WCAG 2.1 A and AA, and the screenshots of each page (the README's, in docs/screenshots/,
when ``KEYLEDGER_SCREENSHOTS`` names that folder).

They need Chromium (Debian's package: ``apt-get install -y chromium``; ``.ci/run``
installs it when missing) and skip, saying so, where it is absent. ``-m "not browser"``
leaves them out on purpose. The audit also needs axe-core, which ``make test`` installs
from tests/e2e/package.json into build/node with ``npm ci`` where npm exists; without it
the audit skips, saying so.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from keyledger import Actor, ExportCheckpoint, Ledger, verify_export
from keyledger.adapters.asgi import PRINCIPAL_KEY, ApiKeyMiddleware
from keyledger.adapters.console import console
from keyledger.testing import ManualClock

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = Path(
    os.environ.get("KEYLEDGER_SCREENSHOTS") or Path(tempfile.gettempdir()) / "keyledger-screenshots"
)
"""Where the pages' screenshots go: a scratch folder, unless ``KEYLEDGER_SCREENSHOTS``
names another (``KEYLEDGER_SCREENSHOTS=docs/screenshots make test`` refreshes the
README's); a plain test run never rewrites files of the repository."""
AXE = Path(__file__).resolve().parents[2] / "build/node/node_modules/axe-core/axe.min.js"
"""axe-core, as ``make test`` installs it from tests/e2e/package.json."""
WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="no Chromium on this machine (apt-get install -y chromium); the browser tests need it",
    ),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")


def host_app(ledger: Ledger, actor: Actor, clock: ManualClock) -> Starlette:
    """A host service: an API behind keyledger's middleware and the console, in one app."""

    async def orders(request: Request) -> JSONResponse:
        principal = request.scope[PRINCIPAL_KEY]
        return JSONResponse({"account": principal.account, "key": principal.key_id})

    api = ApiKeyMiddleware(Starlette(routes=[Route("/orders", orders)]), ledger)
    credentials = console(ledger, actor=lambda scope: actor, api_url="http://service/api/orders", clock=clock)
    return Starlette(routes=[Mount("/api", api), Mount("/console", credentials)])


@pytest.fixture
def served(
    ledger: Ledger, admin: Actor, clock: ManualClock, serve_asgi: Callable[[Any], httpx.Client]
) -> httpx.Client:
    return serve_asgi(host_app(ledger, admin, clock))


@contextmanager
def browser_tab(served: httpx.Client, bypass_csp: bool = False) -> Iterator[Any]:
    """A tab of a fresh Chromium on the served app; ``bypass_csp`` lets a test inject a script."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(
            base_url=str(served.base_url),
            viewport={"width": 1280, "height": 900},
            accept_downloads=True,
            bypass_csp=bypass_csp,
        )
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=str(served.base_url))
        tab = context.new_page()
        tab.set_default_timeout(10_000)
        try:
            yield tab
        finally:
            context.close()
            browser.close()


@pytest.fixture
def page(served: httpx.Client) -> Iterator[Any]:
    with browser_tab(served) as tab:
        yield tab


@pytest.fixture
def audited_page(served: httpx.Client) -> Iterator[Any]:
    """A tab that ignores the console's Content-Security-Policy, so axe-core can be injected."""
    with browser_tab(served, bypass_csp=True) as tab:
        yield tab


def screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def unlabelled_controls(page: Any) -> list[str]:
    """The visible form controls with no accessible name (no label, no aria-label)."""
    found: list[str] = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea, button')]
            .filter(e => e.type !== 'hidden' && e.offsetParent !== null)
            .filter(e => !((e.labels && e.labels.length) || e.getAttribute('aria-label')
                          || (e.tagName === 'BUTTON' && e.textContent.trim())))
            .map(e => e.outerHTML)"""
    )
    return found


def axe_violations(page: Any) -> list[str]:
    """What axe-core finds against WCAG 2.1 A and AA on the page as it stands, with every
    ``<details>`` opened: one line per rule and element (rule id, impact, the HTML, cut short)."""
    page.evaluate("() => document.querySelectorAll('details').forEach(d => { d.open = true; })")
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("(tags) => axe.run(document, {runOnly: {type: 'tag', values: tags}})", WCAG_21_AA)
    return [
        f"{rule['id']} ({rule['impact']}: {rule['help']}): {' '.join(node['html'].split())[:200]}"
        for rule in result["violations"]
        for node in rule["nodes"]
    ]


def focus_ring_contrast(page: Any) -> float:
    """The contrast ratio of the focused element's outline against the background around it
    (the first opaque one of its ancestors), as WCAG defines it."""
    ratio: float = page.evaluate(
        """() => {
            const rgb = (css) => css.match(/[\\d.]+/g).map(Number);
            const luminance = (colour) => {
                const [r, g, b] = colour.slice(0, 3).map((c) => c / 255)
                    .map((c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4));
                return 0.2126 * r + 0.7152 * g + 0.0722 * b;
            };
            let around = document.activeElement.parentElement;
            while (around && rgb(getComputedStyle(around).backgroundColor)[3] === 0) {
                around = around.parentElement;
            }
            const back = around ? rgb(getComputedStyle(around).backgroundColor) : [255, 255, 255];
            const ring = rgb(getComputedStyle(document.activeElement).outlineColor);
            const [light, dark] = [luminance(ring), luminance(back)].sort((a, b) => b - a);
            return (light + 0.05) / (dark + 0.05);
        }"""
    )
    return ratio


def lived_in(ledger: Ledger, clock: ManualClock, people: list[Actor]) -> None:
    """Half a year of an account's history: keys added, regenerated with grace, one revoked."""
    apps = ["Salesforce", "NetSuite", "Zendesk", "HubSpot", "Segment", "Looker"]
    keys: list[tuple[Actor, str]] = []
    for month in range(6):
        for n in range(month % 3 + 1):
            who, app = people[(month + n) % len(people)], apps[(month + n) % len(apps)]
            keys.append((who, ledger.create_key(who, name=f"{app} sync", application=app).key_id))
        for who, key_id in keys[-2:]:
            ledger.regenerate_key(who, key_id, mode="grace")
            clock.advance(hours=5)
        if month == 3:
            ledger.revoke_key(keys[0][0], keys[0][1], reason="integration retired")
        clock.advance(days=28)


def call_api(served: httpx.Client, header: str | None) -> int:
    headers = {"Authorization": header} if header else {}
    return served.get("/api/orders", headers=headers).status_code


class TestLifecycleInABrowser:
    def test_a_person_adds_regenerates_and_revokes_a_key(
        self, page: Any, served: httpx.Client, ledger: Ledger, clock: ManualClock, alice: Actor
    ) -> None:
        """Add a key, copy it, use its Basic header, regenerate with grace, revoke."""
        ledger.create_key(alice, name="Billing", purpose="invoices", application="NetSuite")
        page.goto("/console/")
        assert unlabelled_controls(page) == []

        page.get_by_label("Name").fill("Shipping")
        page.get_by_label("Purpose").fill("Print labels")
        page.get_by_label("Application").fill("ShipStation")
        page.get_by_role("button", name="Add key").click()

        page.get_by_text("Your new private API key").wait_for()
        key = page.locator("#new-key").input_value()
        page.get_by_role("button", name="Copy key").click()
        page.get_by_text("Copied.").first.wait_for()
        assert page.evaluate("navigator.clipboard.readText()") == key
        page.get_by_text("Need help using the API key?").click()
        header = page.locator("#auth-header").input_value().removeprefix("Authorization: ")
        screenshot(page, "key-created")
        assert call_api(served, header) == 200
        assert call_api(served, None) == 401

        dialogs: list[str] = []
        page.once("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.get_by_role("link", name="Back to API credentials").click()
        assert dialogs
        assert "I have stored this key" in dialogs[0]
        assert page.locator("#new-key").is_visible()
        page.get_by_label("I have stored this key").check()
        page.get_by_role("link", name="Back to API credentials").click()
        page.get_by_role("heading", name="API credentials").wait_for()
        assert key not in page.content()

        page.get_by_role("link", name="Shipping").click()
        page.get_by_role("heading", name="Regenerate").wait_for()
        assert unlabelled_controls(page) == []
        assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", page.locator("#grace-deadline").inner_text())
        page.get_by_label(re.compile("Keep it working for 12 hours")).check()
        page.get_by_role("button", name="Regenerate key").click()
        page.get_by_text("Your regenerated API key").wait_for()
        deadline = clock() + timedelta(hours=12)
        assert page.locator("#previous-deadline").inner_text() == deadline.strftime("%Y-%m-%d %H:%M:%S UTC")
        new_key = page.locator("#new-key").input_value()
        page.get_by_label("I have stored this key").check()

        clock.advance(hours=12, microseconds=-1)
        assert call_api(served, header) == 200
        assert call_api(served, f"Bearer {new_key}") == 200
        clock.advance(microseconds=1)
        assert call_api(served, header) == 401

        page.get_by_role("link", name="Shipping").click()
        screenshot(page, "key")
        page.get_by_label(re.compile("To confirm, type the key's name")).fill("Shipping")
        page.get_by_label(re.compile("Reason")).fill("moved to the new label printer")
        page.get_by_role("button", name="Revoke key").click()
        page.get_by_text("never works again").wait_for()
        assert call_api(served, f"Bearer {new_key}") == 401
        assert "moved to the new label printer" in page.content()
        page.goto("/console/")
        screenshot(page, "keys")

    def test_a_reviewer_revokes_a_user_and_downloads_the_audit_trail(
        self,
        page: Any,
        served: httpx.Client,
        ledger: Ledger,
        clock: ManualClock,
        alice: Actor,
        bob: Actor,
        tmp_path: Path,
    ) -> None:
        """The user cascade preview and confirm; an audit filter; an export verify_export accepts."""
        lived_in(
            ledger, clock, [alice, Actor(user_id="carol", account="acme", permissions=alice.permissions)]
        )
        bobs = ledger.create_key(bob, name="Bob's reporting key", application="Looker")
        shared = ledger.create_key(alice, name="Warehouse sync", application="ShipBob")
        ledger.regenerate_key(bob, shared.key_id, mode="grace")
        ledger.create_key(alice, name="Alice's only", application="Zapier")

        page.goto("/console/users")
        assert unlabelled_controls(page) == []
        page.get_by_role("link", name="Revoke access of bob…").click()
        rows = page.locator("#removed-keys tbody tr")
        assert rows.count() == 2
        assert "Alice's only" not in page.locator("#removed-keys").inner_text()
        screenshot(page, "users-revoke-preview")
        page.get_by_role("button", name=re.compile("Revoke access and remove 2 key")).click()
        page.get_by_text("Access of user bob revoked").wait_for()
        assert call_api(served, f"Bearer {bobs.secret.get_secret_value()}") == 401
        screenshot(page, "users")

        page.get_by_role("link", name="Audit trail", exact=True).click()
        page.get_by_label("Action").select_option("KeyRegenerated")
        page.get_by_role("button", name="Filter").click()
        assert page.locator("table.audit tbody tr").count() == len(ledger.audit(action="KeyRegenerated"))
        page.get_by_label("Action").select_option("")
        page.get_by_role("button", name="Filter").click()
        page.get_by_role("button", name="Check integrity").click()
        page.get_by_text("Intact.").wait_for()
        assert unlabelled_controls(page) == []
        screenshot(page, "audit")
        with page.expect_download() as download_info:
            page.get_by_role("button", name="Download export").click()
        archive = tmp_path / "export.zip"
        download_info.value.save_as(archive)
        with zipfile.ZipFile(io.BytesIO(archive.read_bytes())) as bundle:
            bundle.extractall(tmp_path)
        (export,) = tmp_path.glob("*.jsonl")
        (checkpoint,) = tmp_path.glob("*.checkpoint.json")
        report = verify_export(export, ExportCheckpoint.model_validate_json(checkpoint.read_text()))
        assert report.ok
        assert report.lines_checked == len(ledger.audit(account="acme", limit=10_000))

        page.get_by_role("link", name="Report", exact=True).click()
        assert page.locator("svg[role=img]").count() == 3
        screenshot(page, "report")


@pytest.mark.skipif(
    not AXE.exists(),
    reason=f"axe-core is not installed at {AXE} (make test installs it with npm ci where npm exists)",
)
class TestAccessibilityAudit:
    def test_axe_finds_no_wcag_violation_on_any_page(
        self, audited_page: Any, ledger: Ledger, clock: ManualClock, alice: Actor, bob: Actor
    ) -> None:
        """Every page, with its badges, messages and errors showing, passes WCAG 2.1 A and AA."""
        page = audited_page
        lived_in(ledger, clock, [alice, bob])
        found: dict[str, list[str]] = {}

        page.goto("/console/")
        found["keys"] = axe_violations(page)
        page.get_by_label("Name").fill("Shipping")
        page.get_by_role("button", name="Add key").click()
        page.get_by_role("button", name="Copy key").click()
        page.get_by_text("Copied.").first.wait_for()
        found["key created"] = axe_violations(page)
        page.get_by_label("I have stored this key").check()
        page.get_by_role("link", name="Shipping").click()
        page.get_by_label(re.compile("To confirm")).fill("Shipment")
        page.get_by_role("button", name="Revoke key").click()
        page.get_by_text("Not done.").first.wait_for()
        found["key, a revoke refused"] = axe_violations(page)
        page.get_by_label(re.compile("To confirm")).fill("Shipping")
        page.get_by_role("button", name="Revoke key").click()
        page.get_by_text("never works again").wait_for()
        found["revoked key"] = axe_violations(page)
        page.goto("/console/users")
        page.get_by_role("link", name="Revoke access of bob…").click()
        found["revoke-user preview"] = axe_violations(page)
        page.get_by_role("button", name=re.compile("Revoke access and remove")).click()
        page.get_by_text("Access of user bob revoked").wait_for()
        found["users, bob revoked"] = axe_violations(page)
        page.goto("/console/audit")
        page.get_by_role("button", name="Check integrity").click()
        page.get_by_text("Intact.").wait_for()
        found["audit trail"] = axe_violations(page)
        page.goto("/console/report")
        found["report"] = axe_violations(page)

        violations = [f"{where}: {line}" for where, lines in found.items() for line in lines]
        assert not violations, "axe-core found WCAG 2.1 AA violations:\n" + "\n".join(violations)


class TestKeyboardOnly:
    def tab_to(self, page: Any, selector: str, limit: int = 60) -> None:
        """Press Tab until the element matching ``selector`` has the focus."""
        for _ in range(limit):
            if page.evaluate("(s) => document.activeElement && document.activeElement.matches(s)", selector):
                outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
                assert outline != "none", f"{selector} has no visible focus"
                assert focus_ring_contrast(page) >= 3, f"{selector}'s focus ring is below 3:1 (WCAG 1.4.11)"
                return
            page.keyboard.press("Tab")
        pytest.fail(f"{selector} cannot be reached with Tab")

    def test_a_key_is_added_and_revoked_without_a_mouse(
        self, page: Any, served: httpx.Client, ledger: Ledger
    ) -> None:
        """Every step of adding and revoking a key is reachable by Tab, Enter and Space."""
        page.goto("/console/")

        self.tab_to(page, "#name")
        page.keyboard.type("Keyboard key")
        self.tab_to(page, "#application")
        page.keyboard.type("Terminal")
        self.tab_to(page, "button.primary[type=submit]")
        page.keyboard.press("Enter")
        page.get_by_text("Your new private API key").wait_for()
        key = page.locator("#new-key").input_value()
        self.tab_to(page, "[data-copy=new-key]")
        page.keyboard.press("Enter")
        page.get_by_text("Copied.").first.wait_for()
        self.tab_to(page, "#stored")
        page.keyboard.press("Space")
        self.tab_to(page, "a[data-leave-check]")
        page.keyboard.press("Enter")
        page.get_by_role("heading", name="API credentials").wait_for()

        self.tab_to(page, "table.keys a")
        page.keyboard.press("Enter")
        page.get_by_role("heading", name="Revoke").wait_for()
        self.tab_to(page, "#confirm-name")
        page.keyboard.type("Keyboard key")
        self.tab_to(page, "button.danger")
        page.keyboard.press("Enter")
        page.get_by_text("never works again").wait_for()

        assert call_api(served, f"Bearer {key}") == 401
        assert [entry.action for entry in ledger.audit()] == ["KeyCreated", "KeyRevoked"]
