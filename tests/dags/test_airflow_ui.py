"""The Airflow UI as a person uses it (issue 21): Airflow 3's web UI, served by `airflow standalone` on the session
stack, driven in headless Chromium (Debian's `chromium`, which `make install` installs) by Playwright.

A person signs in through the simple auth manager's form with the password Airflow generated for them, finds the
four DAGs with their docs and no import error, triggers `policy_cold_path` from the trigger dialog with its params
form filled, watches the run succeed and reads the run's counts in a task's log; then, with a sync target down,
triggers `policy_consistency_repair` and reads the target's DP code in the failed task's log. Every assertion is on
what the page shows. Each step leaves a screenshot (`01_login.png`, `02_dags.png`, ...) in the test's temporary
folder; its path is printed and recorded as the test's `screenshots` property.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Locator, Page, async_playwright, expect

from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import postgres

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    StorePending = Callable[[Settings, str, int], Awaitable[list[str]]]  # the `store_pending` fixture

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"  # Debian's package (`make install`); Playwright's own browser builds are not used
USER = "operator"
UI_TIMEOUT_MS = 30_000   # a page of the React UI, and what it loads asynchronously
RUN_TIMEOUT_MS = 300_000  # a DAG run, from the click on Trigger to its last task
# A phrase of each DAG's doc_md (the DAG file's docstring), as the UI renders it.
DOCS = {
    "dlq_retry": "every 6 hours: retry the pending dead letters through the stage that refused them",
    "policy_cold_path": "hourly: score what waits for a score, sync the targets, check them, send the events",
    "policy_consistency_repair": "daily: compare each target (Milvus, the graph, Elasticsearch) with PostgreSQL "
                                 "and repair what is missing, stale or orphaned",
    "policy_retention": "daily at 03:30 UTC: delete the history past each table's retention",
}


class TcpForwarder:
    """A loopback port that forwards each connection to `upstream` (host, port) until `stop()`; from then on
    nothing listens there, so a client is refused as by an engine that is down."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self._upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # stopped
                return
            try:
                upstream = socket.create_connection(self._upstream, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, target), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:  # either side done: the connection is (HTTP: a response read, or a peer gone)
            self._close(source, target)

    def _close(self, *sockets: socket.socket) -> None:
        for sock in sockets:
            with self._lock:
                self._open.discard(sock)
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def stop(self) -> None:
        self._close(self._listener)  # shutdown wakes the accept() above
        with self._lock:
            connections = list(self._open)
        self._close(*connections)


@pytest.fixture(scope="module")
def search_target(stack: Settings) -> Iterator[TcpForwarder]:
    """The search target (Elasticsearch API) as Airflow's tasks reach it: through a forwarder that the test can
    take down, as an engine goes down under a running Airflow."""
    address = urlsplit(stack.elasticsearch_url)
    forwarder = TcpForwarder((address.hostname or "127.0.0.1", address.port or 9200))
    yield forwarder
    forwarder.stop()


@pytest.fixture(scope="module")
def airflow_env(airflow_env: dict[str, str], search_target: TcpForwarder) -> dict[str, str]:
    """The shared environment, with a real sign-in (one user, an admin, whose password Airflow generates into
    `$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated` and prints, as `make airflow` does) instead of
    every visitor an admin, and the search target behind `search_target`."""
    return {**airflow_env,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
            "ELASTICSEARCH_URL": f"http://127.0.0.1:{search_target.port}"}


def generated_password(airflow_env: dict[str, str]) -> str:
    """The password Airflow generated for USER at start (the API server writes it as it starts serving)."""
    path = Path(airflow_env["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
    deadline = time.monotonic() + 30
    while not (path.exists() and USER in (passwords := json.loads(path.read_text() or "{}"))):
        assert time.monotonic() < deadline, f"no password generated for {USER} in {path}"
        time.sleep(0.5)
    return str(passwords[USER])


class Screenshots:
    """Numbered PNGs of each step in the test's folder: 01_login.png, 02_dags.png, ..."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.paths: list[Path] = []

    async def take(self, page: Page, name: str) -> Path:
        path = self.folder / f"{len(self.paths) + 1:02d}_{name}.png"
        await page.screenshot(path=path)
        self.paths.append(path)
        return path


async def sign_in(page: Page, base: str, password: str, shots: Screenshots) -> None:
    """A person opens the UI: not signed in, they are sent to the sign-in form. A wrong password is refused with
    a message; with the password Airflow generated for them they are signed in and see the home page."""
    await page.goto(f"{base}/")
    await expect(page).to_have_url(re.compile(r"/auth/login"))
    await expect(page.get_by_text("Sign into Airflow")).to_be_visible()
    await page.get_by_label("Username").fill(USER)
    await page.get_by_label("Password").fill(password + "-wrong")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_text("Invalid credentials")).to_be_visible()
    await expect(page).to_have_url(re.compile(r"/auth/login"))

    await page.get_by_label("Password").fill(password)
    await shots.take(page, "login")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(f"{base}/", timeout=UI_TIMEOUT_MS)
    await expect(page.get_by_text("Welcome")).to_be_visible(timeout=UI_TIMEOUT_MS)


async def see_the_dags_listed(page: Page, shots: Screenshots) -> None:
    """On the Dags page the person finds the four DAGs (the list reloaded until Airflow's DAG processor has
    parsed them: it runs beside the UI)."""
    await page.get_by_test_id("nav-dags-link").click()
    deadline = time.monotonic() + 180
    while True:
        try:
            await expect(page.get_by_text(f"{len(DOCS)} Dags", exact=True)).to_be_visible(timeout=5000)
            break
        except AssertionError:
            assert time.monotonic() < deadline, (f"the Dags page never listed {len(DOCS)} DAGs: "
                                                 + await page.inner_text("body"))
            await page.reload()
    for dag_id in DOCS:
        await expect(page.get_by_role("link", name=dag_id, exact=True)).to_be_visible(timeout=UI_TIMEOUT_MS)
    await shots.take(page, "dags")


async def open_dag(page: Page, dag_id: str) -> None:
    """The person goes to the Dags page and clicks the DAG's name: its page opens."""
    await page.get_by_test_id("nav-dags-link").click()
    await page.get_by_role("link", name=dag_id, exact=True).click()
    await expect(page).to_have_url(re.compile(rf"/dags/{dag_id}$"), timeout=UI_TIMEOUT_MS)
    await expect(page.get_by_test_id("trigger-dag-button")).to_have_count(1)  # the DAG page's, not the list's


async def read_each_dags_docs(page: Page, shots: Screenshots) -> None:
    """For each DAG the person opens its page and its Dag Docs: the DAG's doc_md is shown."""
    for dag_id, phrase in DOCS.items():
        await open_dag(page, dag_id)
        await page.get_by_role("button", name="Dag Docs").click()
        docs = page.get_by_role("dialog")
        await expect(docs).to_contain_text("Dag Documentation", timeout=UI_TIMEOUT_MS)
        await expect(docs).to_contain_text(phrase)
        await shots.take(page, f"docs_{dag_id}")
        await page.keyboard.press("Escape")
        await expect(docs).to_be_hidden()


async def see_no_import_errors(page: Page, shots: Screenshots) -> None:
    """Back on the home page the person reads the stats: with a DAG file that cannot be imported, a "Dag Import
    Error(s)" stat would stand beside "Failed Dags"; there is none."""
    await page.get_by_test_id("nav-home-link").click()
    await expect(page.get_by_text("Failed Dags")).to_be_visible(timeout=UI_TIMEOUT_MS)
    await expect(page.get_by_text("Active Dags")).to_be_visible()
    await page.wait_for_load_state("networkidle")  # every stat's request answered
    assert await page.get_by_text(re.compile(r"Dag Import Errors?")).count() == 0, await page.inner_text("body")
    await shots.take(page, "no_import_errors")


def param_field(dialog: Locator, name: str) -> Locator:
    """The row of the trigger form's "Run Parameters" labelled `name` (the UI labels rows by param name; the
    label is not tied to every input, so the input is looked up inside its row)."""
    return dialog.get_by_role("group").filter(has=dialog.page.get_by_text(name, exact=True))


async def trigger(page: Page, dag_id: str, fill: Callable[[Locator], Awaitable[None]], conf: dict[str, object],
                  shots: Screenshots, shot: str) -> str:
    """The person opens the DAG, presses Trigger, leaves "Unpause on trigger" ticked, fills the params form
    (`fill`), checks in Advanced Options that the run's configuration JSON says `conf`, and triggers: the UI
    goes to the new run's page. Its run id, as the page's header shows it."""
    await open_dag(page, dag_id)
    await page.get_by_role("button", name="Trigger Dag").click()
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_contain_text(f"Trigger Dag - {dag_id}", timeout=UI_TIMEOUT_MS)
    await expect(dialog.get_by_label(f"Unpause {dag_id} on trigger")).to_be_checked()
    await fill(dialog)
    await shots.take(page, f"{shot}_params")
    await dialog.get_by_role("button", name="Advanced Options").click()
    configuration = dialog.get_by_role("group").filter(has=page.get_by_text("Configuration JSON", exact=True))
    for key, value in conf.items():  # the editor lays the JSON out over lines: any whitespace between tokens
        entry = json.dumps({key: value}, separators=(",", ":"))[1:-1]
        await expect(configuration).to_contain_text(re.compile(r"\s*".join(map(re.escape, entry))))
    await shots.take(page, f"{shot}_conf")
    await dialog.get_by_role("button", name="Trigger", exact=True).click()
    await expect(page).to_have_url(re.compile(rf"/dags/{dag_id}/runs/[^/]+$"), timeout=UI_TIMEOUT_MS)
    header = page.get_by_test_id("header-card")
    await expect(header.get_by_role("heading", name=re.compile("^manual__"))).to_be_visible(timeout=UI_TIMEOUT_MS)
    return await header.get_by_role("heading", name=re.compile("^manual__")).inner_text()


async def wait_for_state(badge: Locator, states: str) -> str:
    """The person watches a state badge (the UI refreshes it while the run goes on) until it shows one of
    `states` (a regex) or a final state; the state it shows then."""
    await expect(badge).to_have_text(re.compile(rf"^\s*({states}|Success|Failed)\s*$"), timeout=RUN_TIMEOUT_MS)
    return (await badge.inner_text()).strip()


async def open_task_log(page: Page, task_id: str) -> Locator:
    """From the run's page the person opens a task instance: its Logs tab shows the log of its try."""
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=task_id, exact=True))
    await row.get_by_role("link", name=task_id, exact=True).click()
    await expect(page).to_have_url(re.compile(rf"/tasks/{task_id}$"), timeout=UI_TIMEOUT_MS)
    await expect(page.get_by_role("link", name="Logs", exact=True)).to_be_visible()
    await page.get_by_role("button", name="Log Settings").click()  # long lines wrapped, to read them whole
    wrap = page.get_by_role("menuitem", name="Wrap", exact=True)
    if await wrap.count():
        await wrap.click()
    else:
        await page.keyboard.press("Escape")
    return page.get_by_test_id("main-content")


async def statuses(settings: Settings, source: str) -> dict[str, int]:
    async with postgres.connect(settings.postgres_dsn()) as connection:
        rows = await connection.fetch("SELECT status, count(*) AS n FROM policies WHERE source_system = $1 "
                                      "GROUP BY status", source)
    return {row["status"]: row["n"] for row in rows}


async def test_a_person_signs_in_finds_the_dags_runs_the_cold_path_and_sees_a_target_down_by_its_dp_code(
        stack: Settings, airflow_server: str, airflow_env: dict[str, str], search_target: TcpForwarder,
        store_pending: StorePending, fresh_source: str, tmp_path: Path,
        record_property: Callable[[str, object], None], capsys: pytest.CaptureFixture[str]) -> None:
    shots = Screenshots(tmp_path)
    record_property("screenshots", str(tmp_path))
    with capsys.disabled():
        print(f"\nAirflow UI screenshots: {tmp_path}")
    source = fresh_source  # one the configured sources file names: the form offers only those
    await store_pending(stack, source, 5)  # 5 waiting; the run is limited to 3

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM)
        page = await browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(UI_TIMEOUT_MS)
        try:
            await sign_in(page, airflow_server, generated_password(airflow_env), shots)
            await see_the_dags_listed(page, shots)
            await read_each_dags_docs(page, shots)
            await see_no_import_errors(page, shots)

            # The hourly DAG, triggered by hand on one source with a limit.
            async def fill_cold_path(dialog: Locator) -> None:
                await param_field(dialog, "limit").get_by_role("spinbutton").fill("3")
                # A list of the configured sources (with a search box): the person picks theirs.
                await param_field(dialog, "source").get_by_role("combobox").click()
                await dialog.page.get_by_role("option", name=source, exact=True).click()

            run_id = await trigger(page, "policy_cold_path", fill_cold_path, {"limit": 3, "source": source},
                                   shots, "trigger_cold_path")
            header = page.get_by_test_id("header-card")
            state = await wait_for_state(header.get_by_test_id("state-badge"), "Success")
            assert state == "Success", f"the run {run_id} shows {state!r}: " + await page.inner_text("body")
            await expect(header).to_contain_text(USER)  # Triggering User: who signed in
            await shots.take(page, "cold_path_succeeded")

            log = await open_task_log(page, "summarise_scoring")
            completed = log.get_by_text(re.compile(r"cold_path_completed.*run_id=airflow:"))
            await expect(completed).to_be_visible(timeout=UI_TIMEOUT_MS)
            await shots.take(page, "cold_path_log_counts")
            line = await completed.inner_text()
            assert f"run_id=airflow:{run_id}" in line, line
            counts = {name: int(value) for name, value in re.findall(r"\b(active|rejected|duplicate)=(\d+)", line)}
            assert counts.keys() == {"active", "rejected", "duplicate"} and sum(counts.values()) == 3, line
            # The counts the UI shows are what the run decided: 3 of the source's 5 records, 2 still waiting.
            assert await statuses(stack, source) == {
                status: n for status, n in {"active": counts["active"],
                                            "rejected": counts["rejected"] + counts["duplicate"],
                                            "pending_validation": 2}.items() if n}, line

            # The search target goes down under the running Airflow; the repair is triggered for it.
            search_target.stop()

            async def fill_repair(dialog: Locator) -> None:
                # A multi-select of the three targets: the person types and picks one.
                await param_field(dialog, "targets").get_by_role("combobox").fill("search")
                await dialog.page.get_by_role("option", name="search", exact=True).click()

            await trigger(page, "policy_consistency_repair", fill_repair, {"targets": ["search"]},
                          shots, "trigger_repair")
            row = page.get_by_role("row").filter(has=page.get_by_role("link", name="check_and_repair", exact=True))
            # Its first try fails; Airflow retries it later (retries=3, a minute apart): up for retry, or failed.
            state = await wait_for_state(row.get_by_test_id("state-badge"), "Up For Retry")
            assert state in {"Up For Retry", "Failed"}, (
                f"check_and_repair shows {state!r} with search down: " + await page.inner_text("body"))
            await shots.take(page, "repair_failed")

            log = await open_task_log(page, "check_and_repair")
            error = log.get_by_text(re.compile(r"SyncFailedError: DP_3\d{3}: consistency repair failed for search"))
            await expect(error.first).to_be_visible(timeout=UI_TIMEOUT_MS)
            await expect(error.first).to_contain_text("DP_3003")  # search's code (DP_3001 vectors, DP_3002 graph)
            await shots.take(page, "repair_log_dp_code")
        except BaseException:
            with contextlib.suppress(Exception):  # the page as it was when the test failed, if it still is
                await shots.take(page, "failure")
            raise
        finally:
            await browser.close()
