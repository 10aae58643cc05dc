"""GraphiQL for browsers at /graphql, loaded from the package's own assets rather than a CDN.

The example operations of schema/operations open as tabs. A token field above GraphiQL
adds a bearer token to every tab's requests: GraphiQL keeps headers per tab, and a
placeholder token in them would be sent as is and refused. The field is not stored, and the
headers editors (prefilled with ``{}``) are not persisted, so a token does not outlive the
page in the browser's storage; GraphiQL's settings let a user turn persistence on. The page
carries the schema's introspection, so completion and docs work before a token is entered,
unless introspection is switched off: then it carries none and asks for none.
"""

from __future__ import annotations

import base64
import hashlib
import json
from functools import cache
from html import escape
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from mailflow.api.schema import schema

ASSETS_DIR = Path(__file__).parent / "static" / "graphiql"
ASSETS_PATH = "/static/graphiql"

OPERATION_ORDER = ("ConnectorReport", "TlsUsage", "ProtectedInTransit", "Insights")
"""The example operations of schema/operations, one GraphiQL tab each, in this order."""

TOKEN_HINT = (
    "Examples of the dashboard's operations are open in tabs. To read your organization, "
    "paste a token from <code>mailflow token create</code> here; every tab sends it as "
    "<code>Authorization: Bearer</code>. Without it, queries read the demo organization if "
    "this server has one. The token stays in this page only."
)

_PAGE = """\
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mailflow · GraphiQL</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{assets}/graphiql.min.css">
<style>
  html, body {{ height: 100%; margin: 0; }}
  body {{ display: flex; flex-direction: column; }}
  .mailflow-hint {{
    margin: 0; padding: 6px 12px; font: 13px/1.4 system-ui, sans-serif;
    color: #3f3f46; background: #f4f4f5; border-bottom: 1px solid #e4e4e7;
  }}
  .mailflow-hint code {{ font-size: 12px; }}
  .mailflow-hint label {{ margin-left: 8px; white-space: nowrap; }}
  .mailflow-hint input {{ width: 22em; font: 12px ui-monospace, monospace; }}
  @media (prefers-color-scheme: dark) {{
    .mailflow-hint {{ color: #d4d4d8; background: #18181b; border-color: #3f3f46; }}
  }}
  #graphiql {{ flex: 1; min-height: 0; display: flex; }}
</style>
</head>
<body>
<p class="mailflow-hint">{hint}
<label>Token <input id="mailflow-token" type="password" autocomplete="off"
  spellcheck="false" placeholder="paste a token"></label></p>
<div id="graphiql">Loading GraphiQL…</div>
<script type="application/json" id="graphiql-config">{config}</script>
<script src="{assets}/react.production.min.js"></script>
<script src="{assets}/react-dom.production.min.js"></script>
<script src="{assets}/graphiql.min.js"></script>
<script>{boot}</script>
</body>
</html>
"""

_BOOT = """
const config = JSON.parse(document.getElementById("graphiql-config").textContent);
const token = document.getElementById("mailflow-token");
const send = GraphiQL.createFetcher({ url: config.endpoint });
// GraphiQL may keep the operation name of the tab run before; a name the document does not
// define is left out, so that the tab's own operation runs.
const defines = (query, name) =>
  new RegExp("\\\\b(query|mutation|subscription)\\\\s+" + name + "\\\\b").test(query || "");
// The token field's bearer token goes with every tab's requests; a tab's own headers win.
const fetcher = (params, options) => {
  const bearer = token.value.trim();
  const headers = bearer ? { Authorization: "Bearer " + bearer } : {};
  const named = params.operationName && !defines(params.query, params.operationName)
    ? { ...params, operationName: undefined } : params;
  return send(named, { ...options, headers: { ...headers, ...(options?.headers || {}) } });
};
const root = ReactDOM.createRoot(document.getElementById("graphiql"));
root.render(React.createElement(GraphiQL, {
  fetcher,
  schema: config.schema,
  defaultTabs: config.tabs,
  defaultHeaders: config.headers,
  defaultEditorToolsVisibility: "headers",
  isHeadersEditorEnabled: true,
  shouldPersistHeaders: false,
}));
"""
_BOOT_HASH = "sha256-" + base64.b64encode(hashlib.sha256(_BOOT.encode()).digest()).decode()

# The page loads and queries nothing but this server, and runs only its own scripts.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'",
    f"script-src 'self' '{_BOOT_HASH}'",
    # GraphiQL and CodeMirror position their panes with style attributes.
    "style-src 'self' 'unsafe-inline'",
    "font-src 'self' data:",
    "img-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'self'",
])


def asks_for_html(accept: str) -> bool:
    """Whether an Accept header names ``text/html`` (with a weight above 0), as a browser's
    does; ``*/*`` alone is any client's, which wants the API's JSON."""
    for media_range in accept.split(","):
        media_type, *parameters = (part.strip().lower() for part in media_range.split(";"))
        if media_type == "text/html" and not any(
            _is_zero_weight(parameter) for parameter in parameters
        ):
            return True
    return False


def _is_zero_weight(parameter: str) -> bool:
    name, _, value = parameter.partition("=")
    if name.strip() != "q":
        return False
    try:
        return float(value) <= 0
    except ValueError:
        return False


def graphiql_routes() -> list[BaseRoute]:
    """The routes that serve GraphiQL's scripts and styles."""
    return [Mount(ASSETS_PATH, app=StaticFiles(directory=ASSETS_DIR), name="graphiql-assets")]


def graphiql_page(request: Request, *, introspection: bool = True) -> HTMLResponse:
    """The GraphiQL page for a browser's GET /graphql, under the app's root path."""
    root_path = request.scope.get("root_path", "")
    return HTMLResponse(
        render_graphiql(root_path + "/graphql", root_path + ASSETS_PATH,
                        introspection=introspection),
        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY},
    )


def render_graphiql(
    endpoint: str = "/graphql", assets: str = ASSETS_PATH, *, introspection: bool = True
) -> str:
    """The page's HTML: GraphiQL on ``endpoint``, its files fetched from ``assets``.

    Without ``introspection`` the schema is null, which GraphiQL takes as "do not fetch it".
    """
    config = {
        "endpoint": endpoint,
        "tabs": [{"query": query, "headers": "{}"} for query in example_operations()],
        "headers": "{}",
        "schema": _introspection() if introspection else None,
    }
    # "<" is escaped so that no value can close the script element that holds the config.
    config_json = json.dumps(config, separators=(",", ":")).replace("<", "\\u003c")
    return _PAGE.format(assets=escape(assets), hint=TOKEN_HINT, config=config_json, boot=_BOOT)


@cache
def example_operations() -> list[str]:
    """The text of each example operation, in OPERATION_ORDER."""
    folder = operations_dir()
    return [(folder / f"{name}.graphql").read_text(encoding="utf-8") for name in OPERATION_ORDER]


def operations_dir() -> Path:
    """schema/operations: beside the package in a checkout, inside it when installed."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package.parents[1] / "schema" / "operations", package / "operations"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"mailflow's schema/operations folder is missing next to {package}")


@cache
def _introspection() -> dict[str, Any]:
    return schema.introspect()
