"""The API docs work offline: /docs and /redoc load every script, style and icon from the server itself,
and / leads to them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from _server_support import Harness, make_harness


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Harness]:
    harness = make_harness(str(tmp_path / "stages.db"))
    with harness.client:
        yield harness
    harness.databases.close()


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_use_local_assets_only(server: Harness, page: str) -> None:
    answer = server.client.get(page)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    html = answer.text
    assert not re.search(r"https?://", html), "the page loads something from another host"
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    assert any(a.endswith(".js") for a in assets)
    for asset in assets:
        assert asset.startswith("/"), asset
        fetched = server.client.get(asset)
        assert fetched.status_code == 200, asset
        assert len(fetched.content) > 1000, asset  # the real bundle, not an error page
    assert "/openapi.json" in html
    assert server.client.get("/openapi.json").status_code == 200


def test_root_redirects_to_the_docs(server: Harness) -> None:
    answer = server.client.get("/", follow_redirects=False)
    assert answer.status_code in (302, 307)
    assert answer.headers["location"] == "/docs"
    assert server.client.get("/").url.path == "/docs"
