"""JSON request bodies: one too deeply nested or not UTF-8 is a 422, like any other malformed JSON.

FastAPI turns a JSONDecodeError into the usual 422 `json_invalid`, but answers a parse that ran out of
stack (RecursionError, about 1,000 levels deep) or met bytes that are not text (UnicodeDecodeError) with
a bare 400. Routes built with `JsonBodyRoute` report them all the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


class JsonBodyRequest(Request):
    """A request whose JSON body is a decode error whenever it cannot be parsed."""

    async def json(self) -> Any:
        """The parsed body; JSONDecodeError when it is not text or is nested too deeply to parse."""
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = json.loads(body)
            except RecursionError:
                raise json.JSONDecodeError("JSON nested too deeply", "", 0) from None
            except UnicodeDecodeError as exc:
                raise json.JSONDecodeError("Body is not UTF-8 text", "", exc.start) from None
        return self._json


class JsonBodyRoute(APIRoute):
    """A route that reads its JSON body through `JsonBodyRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler, given a `JsonBodyRequest`."""
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            return await handler(JsonBodyRequest(request.scope, request.receive))

        return handle
