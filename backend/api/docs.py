"""Swagger UI and ReDoc served from the `fastapi-offline` package: /docs works with no internet access.

FastAPI's own /docs and /redoc pull their JavaScript, CSS and favicon from a CDN; these routes point at the
same assets installed as package data, so no request leaves the server. The pages stay public (no API key)
and out of the OpenAPI schema.
"""

from __future__ import annotations

import os
from importlib.metadata import version

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from starlette.responses import Response
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
STATIC_URL = "/static/docs"
ASSETS_PACKAGE = "fastapi_offline"
# The version in every asset URL busts browser caches on upgrade, so the assets can be cached for a year.
ASSETS_VERSION = version("fastapi-offline")
CACHE_CONTROL = "public, max-age=31536000, immutable"
# Swagger UI would otherwise ask validator.swagger.io about the spec in layouts that show the badge.
SWAGGER_UI_PARAMETERS = {"validatorUrl": None}

router = APIRouter(include_in_schema=False)


class CachedStaticFiles(StaticFiles):
    """Static files with a long `Cache-Control`: their URLs change whenever the files can."""

    def file_response(
        self, full_path: PathLike, stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        """The file (or 304), marked cacheable for a year."""
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = CACHE_CONTROL
        return response


def asset_url(request: Request, name: str) -> str:
    """The versioned URL of one packaged asset, below the app's root path."""
    return f"{root_path(request)}{STATIC_URL}/{name}?v={ASSETS_VERSION}"


def root_path(request: Request) -> str:
    """The prefix a reverse proxy serves the app under ('' when none)."""
    prefix: str = request.scope.get("root_path", "")
    return prefix.rstrip("/")


def openapi_url(request: Request) -> str:
    """Where the browser fetches the OpenAPI document."""
    return f"{root_path(request)}{request.app.openapi_url}"


@router.get(DOCS_URL)
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI, with Authorize for the `X-API-Key` header."""
    return get_swagger_ui_html(
        openapi_url=openapi_url(request),
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=asset_url(request, "swagger-ui-bundle.js"),
        swagger_css_url=asset_url(request, "swagger-ui.css"),
        swagger_favicon_url=asset_url(request, "favicon.png"),
        oauth2_redirect_url=f"{root_path(request)}{OAUTH2_REDIRECT_URL}",
        swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
    )


@router.get(OAUTH2_REDIRECT_URL)
async def swagger_ui_oauth2_redirect() -> HTMLResponse:
    """The page Swagger UI returns to after an OAuth2 authorization."""
    return get_swagger_ui_oauth2_redirect_html()


@router.get(REDOC_URL)
async def redoc(request: Request) -> HTMLResponse:
    """ReDoc, without Google Fonts."""
    return get_redoc_html(
        openapi_url=openapi_url(request),
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=asset_url(request, "redoc.standalone.js"),
        redoc_favicon_url=asset_url(request, "favicon.png"),
        with_google_fonts=False,
    )


def install_docs(app: FastAPI) -> None:
    """Serve /docs, /redoc and their assets; build the app with `docs_url=None, redoc_url=None`."""
    app.mount(STATIC_URL, CachedStaticFiles(packages=[(ASSETS_PACKAGE, "static")]), name="docs-static")
    app.include_router(router)
