"""Templates and how figures are written on a page.

Autoescape is on for every template (and `tojson` escapes <, > and & in the JSON it
writes into a page), so text from an LLM or a user (reasoning, names, reasons) is
always text, never markup. The filters only format the API's figures; none computes
one.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from api.ui.session import csrf_token

HERE = Path(__file__).parent
STATIC = HERE / "static"
NONE = "\u2013"  # an en dash: no figure
LIGHTWEIGHT_CHARTS = "5.3.0"  # static/vendor/lightweight-charts (see its NOTICE)


# No inline script may run (the page's data travels in JSON blocks, which do not run),
# no other site may frame the console, and a script may only talk to this origin.
SECURITY = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; "
                               "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
                               "form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def money(value: Any) -> str:
    if value is None or value == "":
        return NONE
    return f"{Decimal(str(value)):,.2f}"


def pct(value: Any, sign: bool = True) -> str:
    if value is None:
        return NONE
    return f"{float(value):+.2f}%" if sign else f"{float(value):.2f}%"


NEW_YORK = ZoneInfo("America/New_York")


def number(value: Any, digits: int = 2) -> str:
    return NONE if value is None else f"{float(value):,.{digits}f}"


def when(value: dt.datetime | str | None) -> str:
    """A time in exchange time (New York), as a trader reads a session; a daily bar
    (stamped at midnight UTC) as its date."""
    if value is None:
        return NONE
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    utc = value.astimezone(dt.UTC)
    if utc.time() == dt.time():
        return utc.strftime("%Y-%m-%d")
    return utc.astimezone(NEW_YORK).strftime("%Y-%m-%d %H:%M ET")


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, default=str, ensure_ascii=False)


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(money=money, pct=pct, number=number, when=when, pretty=pretty)
    env.globals["lightweight_charts"] = LIGHTWEIGHT_CHARTS
    return env


ENV = _environment()


def page(request: Request, name: str, status_code: int = 200,
         headers: dict[str, str] | None = None, **context: Any) -> HTMLResponse:
    """The template rendered with what every page has (the CSRF field, the path)."""
    html = ENV.get_template(name).render(csrf=csrf_token(request), path=request.url.path,
                                         user=getattr(request.state, "user_id", None),
                                         **context)
    return HTMLResponse(html, status_code=status_code, headers={
        **SECURITY, "Cache-Control": "no-store", **(headers or {})})
