"""The dashboard page's routes over real HTTP against a real cluster (no browser): what is open
(the page's shell, the login) and what is not (every data route), the cookie's attributes,
`?token=` links, and the followed view keeping up with the cluster."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from rayops.testing.cluster import Cluster

DATA_ROUTES = (
    "/api/dashboard/nodes",
    "/api/dashboard/actors",
    "/api/dashboard/placement_groups",
    "/api/dashboard/usage",
    "/api/dashboard/autoscaler",
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(str(tmp_path_factory.mktemp("dashroutes")), head_cpus=1)
    yield c
    c.shutdown()


@pytest.fixture(scope="module")
def url(cluster: Cluster) -> str:
    return "http://" + cluster.head.started.record.dashboard_url


def _http(method: str, url: str, **kw: Any) -> tuple[int, Any, Any]:
    """(status, body as JSON or text, response headers); redirects are not followed."""

    async def go() -> tuple[int, Any, Any]:
        for _ in range(200):  # the server may still be starting (init() does not wait)
            try:
                async with (
                    aiohttp.ClientSession() as s,
                    s.request(method, url, allow_redirects=False, **kw) as r,
                ):
                    body = await r.read()
                    try:
                        return r.status, json.loads(body), r.headers
                    except ValueError:
                        return r.status, body.decode(), r.headers
            except aiohttp.ClientConnectorError:
                await asyncio.sleep(0.05)
        raise AssertionError(f"{url} never answered")

    return asyncio.run(go())


def _bearer(cluster: Cluster) -> dict[str, str]:
    return {"Authorization": f"Bearer {cluster.token}"}


def test_shell_is_open_and_holds_no_cluster_data(cluster: Cluster, url: str) -> None:
    status, html, headers = _http("GET", url + "/")
    assert status == 200 and '<main id="dashboard"' in html
    assert cluster.head.node_id not in html and cluster.token not in html
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    status, _, headers = _http("GET", url + "/static/app.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    assert _http("GET", url + "/static/nope.js")[0] == 404
    assert _http("GET", url + "/static/..%2Fpage.py")[0] == 404


def test_data_routes_need_the_token(cluster: Cluster, url: str) -> None:
    for route in DATA_ROUTES:
        assert _http("GET", url + route)[0] == 401, route
        assert _http("GET", url + route, headers={"Authorization": "Bearer no"})[0] == 403
        cookie = {"Cookie": "ray-authentication-token=no"}
        assert _http("GET", url + route, headers=cookie)[0] == 403
        status, body, _ = _http("GET", url + route, headers=_bearer(cluster))
        assert status == 200 and isinstance(body, dict), route
        status, body, _ = _http("GET", url + route + "?limit=5", headers=_bearer(cluster))
        assert status == 400 and "limit" in body["error"], route
    cookie = {"Cookie": f"ray-authentication-token={cluster.token}"}
    deadline = time.monotonic() + 30
    while True:  # the server subscribes when it starts: "synced" once the snapshot is in
        status, nodes, _ = _http("GET", url + "/api/dashboard/nodes", headers=cookie)
        assert status == 200
        if nodes["synced"]:
            break
        assert nodes["nodes"] == [] and time.monotonic() < deadline
        time.sleep(0.05)
    assert [n["node_id"] for n in nodes["nodes"]] == [cluster.head.node_id]


def test_login_sets_an_httponly_strict_cookie(cluster: Cluster, url: str) -> None:
    login = url + "/api/dashboard/login"
    status, body, headers = _http("POST", login, json={"token": "wrong"})
    assert body == {"error": "wrong cluster token"}
    assert status == 403 and "Set-Cookie" not in headers
    assert _http("POST", login, json={"tok": cluster.token})[0] == 400
    assert _http("POST", login, data=b"x" * 5000)[0] == 400
    status, _, headers = _http("POST", login, json={"token": cluster.token})
    assert status == 200
    cookie = headers["Set-Cookie"]
    assert cookie.startswith(f"ray-authentication-token={cluster.token};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    status, _, headers = _http("POST", url + "/api/dashboard/logout")
    assert status == 200 and 'ray-authentication-token=""' in headers["Set-Cookie"]
    _, metrics, _ = _http("GET", url + "/metrics", headers=_bearer(cluster))
    refused = [ln for ln in metrics.splitlines() if ln.startswith("rayops_dashboard_refused")]
    assert refused and float(refused[0].split()[-1]) >= 1


def test_token_link_redirects_without_the_token(cluster: Cluster, url: str) -> None:
    status, _, headers = _http("GET", f"{url}/?token={cluster.token}")
    assert status == 303 and headers["Location"] == "/"
    assert "HttpOnly" in headers["Set-Cookie"] and cluster.token in headers["Set-Cookie"]
    status, _, headers = _http("GET", f"{url}/?token=wrong")
    assert status == 303 and headers["Location"] == "/?login=failed"
    assert "Set-Cookie" not in headers


def test_view_follows_the_cluster(cluster: Cluster, url: str) -> None:
    node = cluster.add_node(num_cpus=1)
    deadline = time.monotonic() + 30
    while True:
        _, nodes, _ = _http("GET", url + "/api/dashboard/nodes", headers=_bearer(cluster))
        if nodes["alive"] == 2:
            break
        assert time.monotonic() < deadline, f"the view still shows {nodes['alive']} nodes"
        time.sleep(0.1)
    assert nodes["synced"] and nodes["cluster"]["resources_total"]["CPU"] == 2
    cluster.remove_node(node)
    while True:
        _, nodes, _ = _http("GET", url + "/api/dashboard/nodes", headers=_bearer(cluster))
        states = {n["node_id"]: n["state"] for n in nodes["nodes"]}
        if states.get(node.node_id) == "DEAD":
            break
        assert time.monotonic() < deadline, f"the removed node is still {states}"
        time.sleep(0.1)
    assert nodes["alive"] == 1 and nodes["cluster"]["resources_total"]["CPU"] == 1
