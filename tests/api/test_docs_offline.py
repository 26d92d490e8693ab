"""/docs and /redoc load every asset from the app itself: they work with no internet access, without a key."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urlsplit

import httpx
import pytest

from tests.utils.stack import Stack

URL_ATTRIBUTES = {"src", "href", "spec-url"}
# Smallest plausible body per content type: a truncated or placeholder asset is caught.
MIN_BYTES = {"javascript": 100_000, "css": 10_000, "image/png": 1_000}


class _UrlCollector(HTMLParser):
    """Every URL a page's tags point at (src, href, ReDoc's spec-url)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in URL_ATTRIBUTES and value]


def referenced_urls(html: str) -> list[str]:
    """The URLs in `html`'s tags, in document order."""
    collector = _UrlCollector()
    collector.feed(html)
    return collector.urls


@pytest.fixture
def anonymous(stack: Stack) -> httpx.AsyncClient:
    """The app's client without an API key: the docs are public."""
    assert stack.app_client is not None
    assert "X-API-Key" not in stack.app_client.headers
    return stack.app_client


async def get_page(client: httpx.AsyncClient, path: str) -> str:
    """An HTML page that must load, with no absolute URL anywhere in it."""
    response = await client.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "http://" not in response.text and "https://" not in response.text, response.text
    return response.text


async def assert_served_locally(client: httpx.AsyncClient, url: str) -> None:
    """`url` stays on the app's host, and the app serves a real asset there."""
    absolute = client.base_url.join(url)
    assert (absolute.scheme, absolute.host, absolute.port) == (
        client.base_url.scheme,
        client.base_url.host,
        client.base_url.port,
    ), url
    response = await client.get(absolute)
    assert response.status_code == 200, url
    content_type = response.headers["content-type"]
    kind = next((k for k in MIN_BYTES if k in content_type), None)
    assert kind is not None, f"{url}: unexpected content type {content_type}"
    assert len(response.content) > MIN_BYTES[kind], url
    assert "max-age" in response.headers["cache-control"], url


@pytest.mark.parametrize(
    ("path", "assets"),
    [
        ("/docs", {"swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"}),
        ("/redoc", {"redoc.standalone.js", "favicon.png"}),
    ],
)
async def test_docs_page_loads_only_local_assets(
    anonymous: httpx.AsyncClient, path: str, assets: set[str]
) -> None:
    urls = [url for url in referenced_urls(await get_page(anonymous, path)) if url != "/openapi.json"]
    assert {urlsplit(url).path.rsplit("/", 1)[-1] for url in urls} == assets
    for url in urls:
        await assert_served_locally(anonymous, url)


async def test_swagger_ui_is_wired_for_authorize(anonymous: httpx.AsyncClient) -> None:
    html = await get_page(anonymous, "/docs")
    assert "SwaggerUIBundle({" in html
    assert "url: '/openapi.json'" in html
    assert "oauth2RedirectUrl: window.location.origin + '/docs/oauth2-redirect'" in html
    redirect = await anonymous.get("/docs/oauth2-redirect")
    assert redirect.status_code == 200
    assert "oauth2" in redirect.text


async def test_redoc_reads_the_openapi_document(anonymous: httpx.AsyncClient) -> None:
    assert '<redoc spec-url="/openapi.json">' in await get_page(anonymous, "/redoc")


async def test_openapi_declares_the_api_key_and_hides_the_docs(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    schemes = document["components"]["securitySchemes"].values()
    assert {"type": "apiKey", "in": "header", "name": "X-API-Key"}.items() <= next(iter(schemes)).items()
    assert not {p for p in document["paths"] if p.startswith(("/docs", "/redoc", "/static"))}
