"""What a path allows: OPTIONS, HEAD, and a 405 whose `Allow` names every method of the path.

The router alone gets these wrong. A path served by two routes (/v1/experiments: GET lists,
POST submits) answered a method it lacks with `Allow` naming the first route's methods only
(PUT got `Allow: POST`), and OPTIONS, which asks what a path supports, got that same 405.
RFC 9110 wants `Allow` to list the methods the resource has (15.5.6), OPTIONS to say so
(9.3.7), and HEAD wherever GET is (9.3.2).

So, for a request whose path some route matches but whose method none of them takes:
- OPTIONS answers 204 with `Allow: <the path's methods>, OPTIONS` (HEAD with GET);
- HEAD, where the path has GET, runs the GET; the server sends no body for HEAD;
- any other method answers 405 problem+json with that `Allow`.
Anything else (a method a route takes, a path no route matches: 404, the slash redirect) goes
on to the router untouched. Installed inside the API's edge middleware, so a token is still
required and the latency histogram still counts these answers.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.routing import Match

from api.errors import problem

Scope = dict[str, Any]


# The methods a path is probed for. Asking each route "would you take this request with method
# M?" through `matches` (the call the router itself makes) works for any route type, including
# FastAPI's wrappers of included routers, which keep their routes' methods to themselves.
PROBED = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _served(routes: list[Any], scope: Scope) -> bool:
    return any(route.matches(scope)[0] is Match.FULL for route in routes)


def path_methods(routes: list[Any], scope: Scope) -> set[str] | None:
    """The methods the routes serve at the scope's path; None when a route takes the request
    as it is (nothing to do here) or no route has the path."""
    if _served(routes, scope):
        return None
    methods = {method for method in PROBED if _served(routes, {**scope, "method": method})}
    return methods or None


def allow_header(methods: set[str]) -> str:
    allowed = set(methods) | {"OPTIONS"}
    if "GET" in allowed:
        allowed.add("HEAD")
    return ", ".join(sorted(allowed))


class AllowMethods:
    """ASGI middleware; see the module docstring. Finds the routes through `scope["app"]`
    (Starlette sets it before the middleware stack runs), so it needs no reference to the
    app and sees routes included after it was added."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or "app" not in scope:
            await self.app(scope, receive, send)
            return
        methods = path_methods(scope["app"].router.routes, scope)
        if methods is None:
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if method == "HEAD" and "GET" in methods:
            # A copy: the server still reads HEAD in its own scope and leaves the body out.
            await self.app({**scope, "method": "GET"}, receive, send)
            return
        allow = allow_header(methods)
        if method == "OPTIONS":
            response: Response = Response(status_code=204, headers={"Allow": allow})
        else:
            response = problem(405, "Method Not Allowed", (
                f"{method} is not allowed on {scope['path']}; it allows {allow}"),
                headers={"Allow": allow})
        await response(scope, receive, send)
