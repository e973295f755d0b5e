"""The dashboard page in headless Chromium against a real two-node cluster: without the token it
shows no cluster data; with it, the nodes, actors, placement group and job it shows are the
cluster's; clicking a job shows its printed lines; a screenshot is saved.

Chromium comes from Debian's package (`scripts/bootstrap-browser.sh`, run by the test command);
the test skips, saying so, only where no Chromium is installed.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rayops.job_submission import JobSubmissionClient
from rayops.testing.browser import Browser, Page, find_chromium
from rayops.testing.cluster import Cluster

# ~18 s with the cluster's start and stop: not in the slow tier.
pytestmark = pytest.mark.skipif(
    find_chromium() is None,
    reason="no Chromium on PATH (bash scripts/bootstrap-browser.sh installs Debian's)",
)

JOB_SCRIPT = (
    "import time\n"
    "for i in range(5):\n"
    "    print(f'dashboard-line-{i}', flush=True)\n"
    "time.sleep(4)\n"
    "print('dashboard-job-done', flush=True)\n"
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(str(tmp_path_factory.mktemp("page")), head_cpus=2)
    try:
        c.add_node(num_cpus=2)
        c.wait_for_nodes(2)
        yield c
    finally:
        c.shutdown()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with Browser.launch() as b:
        yield b


@contextlib.contextmanager
def _screenshot_on_failure(page: Page, tmp_path: Path) -> Iterator[None]:
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            print(f"screenshot at the failure: {page.screenshot(str(tmp_path / 'failure.png'))}")
        raise


def _texts(page: Page, selector: str) -> list[str]:
    return page.evaluate(  # type: ignore[no-any-return]
        f"[...document.querySelectorAll({json.dumps(selector)})].map(e => e.textContent)"
    )


def test_page_shows_the_cluster(cluster: Cluster, browser: Browser, tmp_path: Path) -> None:
    import rayops
    from rayops.util.placement_group import placement_group, remove_placement_group

    url = "http://" + cluster.head.started.record.dashboard_url
    node_ids = {n.node_id for n in cluster.nodes}
    cluster.connect()
    try:

        @rayops.remote(num_cpus=0)
        class Counter:
            def ping(self) -> int:
                return 1

        alive = [Counter.remote() for _ in range(4)]
        named = Counter.options(name="dashboard-named").remote()
        doomed = Counter.remote()
        rayops.get([a.ping.remote() for a in [*alive, named, doomed]], timeout=60)
        rayops.kill(doomed)
        pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")
        assert pg.wait(30)

        client = JobSubmissionClient(url, headers={"Authorization": f"Bearer {cluster.token}"})
        sid = client.submit_job(entrypoint=f"python -c {shlex.quote(JOB_SCRIPT)}")

        page = browser.new_page()
        with _screenshot_on_failure(page, tmp_path):
            # Without the token: the login form, no cluster data on the page, data routes refused.
            page.navigate(url + "/")
            page.wait_for("!document.getElementById('login').hidden", what="the login form")
            assert page.evaluate("document.getElementById('dashboard').hidden") is True
            html = page.evaluate("document.documentElement.outerHTML")
            assert not any(n in html for n in node_ids) and sid not in html
            assert _texts(page, "#nodes-body tr, .vrow[data-actor-id], #jobs-body tr") == []
            assert page.evaluate("fetch('/api/dashboard/nodes').then(r => r.status)") == 401
            # A wrong token in the link: refused, said so, and the token is gone from the address.
            page.navigate(url + "/?token=not-the-token")
            page.wait_for("!document.getElementById('login-error').hidden", what="the login error")
            assert page.evaluate("location.search") == ""

            # The login form with the right token.
            page.evaluate(
                f"document.getElementById('login-token').value = {json.dumps(cluster.token)}; "
                "document.getElementById('login-form').requestSubmit()"
            )
            page.wait_for("document.getElementById('dashboard').hidden === false", what="the page")
            assert page.evaluate("document.cookie") == "", "the token cookie must be HttpOnly"

            # Nodes: both, alive, with their ids and the cluster's CPU total.
            page.wait_for("document.getElementById('nodes-count').dataset.alive === '2'")
            shown = set(
                page.evaluate(
                    "[...document.querySelectorAll('#nodes-body tr')].map(r => r.dataset.nodeId)"
                )
            )
            assert shown == node_ids
            assert page.evaluate("document.getElementById('total-cpu').textContent").endswith("/ 4")
            assert len(_texts(page, "#store-bars .storerow")) == 2

            # Actors: 5 alive and 1 dead, the named one listed with its name.
            page.wait_for(
                "document.querySelector('#actors-states [data-state=DEAD]')?.dataset.count === '1'",
                what="the killed actor shown DEAD",
            )
            counts = page.evaluate(
                "Object.fromEntries([...document.querySelectorAll('#actors-states [data-state]')]"
                ".map(e => [e.dataset.state, Number(e.dataset.count)]))"
            )
            assert counts == {"ALIVE": 5, "DEAD": 1}
            rows = page.evaluate(
                "[...document.querySelectorAll('.vrow[data-actor-id]')]"
                ".map(r => [r.dataset.actorId, r.dataset.state, r.children[2].textContent])"
            )
            by_id = {r[0]: (r[1], r[2]) for r in rows}
            assert by_id[doomed._actor_id_hex][0] == "DEAD"
            assert by_id[named._actor_id_hex] == ("ALIVE", "dashboard-named")
            assert all(by_id[a._actor_id_hex][0] == "ALIVE" for a in alive)

            # The placement group, created, one bundle on each node.
            pg_hex = pg.id.hex()
            page.wait_for(
                f"document.querySelector('#pgs-body tr[data-pg-id=\"{pg_hex}\"]')"
                "?.dataset.state === 'CREATED'",
                what="the placement group CREATED",
            )

            # Tasks summary (the state API's, in Ray's shape): the actors' calls, finished.
            pings = len(alive) + 2
            page.wait_for(
                "document.querySelector('#tasks-summary tr[data-name$=\"Counter.ping\"]')"
                f"?.textContent.includes('FINISHED: {pings}')",
                timeout=30,
                what=f"{pings} finished Counter.ping calls in the task summary",
            )
            assert page.evaluate("document.getElementById('tasks-summary').dataset.state") == "ok"

            # The job: listed; a click shows its printed lines live, then SUCCEEDED.
            row = f'#jobs-body tr[data-submission-id="{sid}"]'
            page.wait_for(f"!!document.querySelector({json.dumps(row)})", what="the job's row")
            page.click(row)
            page.wait_for(
                "document.getElementById('job-logs-text').textContent.includes('dashboard-line-4')",
                what="the job's printed lines",
            )
            page.wait_for(
                f"document.querySelector({json.dumps(row)})?.dataset.status === 'SUCCEEDED'",
                timeout=60,
                what="the job SUCCEEDED",
            )
            page.wait_for(
                "document.getElementById('job-logs').dataset.ended === 'true'", what="the log's end"
            )
            text = page.evaluate("document.getElementById('job-logs-text').textContent")
            assert all(f"dashboard-line-{i}" in text for i in range(5))
            assert "dashboard-job-done" in text

            # Charts have samples by now (one every 2 s).
            page.wait_for("document.querySelectorAll('#charts svg path.used').length === 4")
            shot = page.screenshot(str(tmp_path / "dashboard.png"))
            print(f"dashboard screenshot: {shot}")

            # Logging out removes the data from the page.
            page.click("#logout")
            page.wait_for("!document.getElementById('login').hidden", what="the login form")
            assert _texts(page, "#nodes-body tr, .vrow[data-actor-id], #jobs-body tr") == []
            page.send("Page.close")
        remove_placement_group(pg)
    finally:
        rayops.shutdown()


def test_token_link_sets_the_cookie_and_leaves_the_address(
    cluster: Cluster, browser: Browser
) -> None:
    url = "http://" + cluster.head.started.record.dashboard_url
    page = browser.new_page()
    try:
        start = time.monotonic()
        page.navigate(f"{url}/?token={cluster.token}")
        page.wait_for("document.getElementById('nodes-count').dataset.alive === '2'")
        assert time.monotonic() - start < 10
        assert page.evaluate("location.href") == url + "/"
        cookies: list[dict[str, Any]] = page.send("Network.getCookies", urls=[url])["cookies"]
        (cookie,) = [c for c in cookies if c["name"] == "ray-authentication-token"]
        assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
        assert cookie["value"] == cluster.token
    finally:
        page.send("Page.close")
