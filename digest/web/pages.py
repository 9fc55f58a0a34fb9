"""The look of the pages: Jinja2 templates in ``templates/web/``, the theme, the language.

Every page extends ``page.html.j2``, which takes the colours and the logo from
``digest.theme`` (the same ones the email uses) and its words from
``digest.i18n.web_strings_for``. Autoescaping is on: anything a reader, a feed
or the config wrote is escaped on the way into a page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from starlette.responses import HTMLResponse

from ..config import Settings
from ..i18n import WEB_CATALOGUE, strings_for, web_strings_for
from ..theme import Theme

__all__ = ["NOINDEX", "SECURITY_HEADERS", "Pages"]

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "web"

# Sent with every answer, errors included (see app.SecurityHeaders). The pages
# need no script at all; styles are inline in the page itself.
SECURITY_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Cross-Origin-Opener-Policy": "same-origin",
}
NOINDEX = "noindex, nofollow"


class Pages:
    """Renders the web templates for one configuration."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=jinja2.select_autoescape(("html", "xml", "j2")),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["css"] = _css_value
        self.languages = {code: strings["language_name"] for code, strings in WEB_CATALOGUE.items()}

    def text(self, language: str, key: str, **values: Any) -> str:
        """One string of the catalogue, filled in (plain text: escaping is the template's)."""
        return web_strings_for(language)[key].format(title=self.settings.newsletter.title, **values)

    def render(self, template: str, language: str, /, **context: Any) -> str:
        theme = Theme.from_settings(
            self.settings,
            strings_for(language)["logo_alt"].format(title=self.settings.newsletter.title),
        )
        return self.env.get_template(template).render(
            **context,
            lang=language,
            theme=theme,
            title=self.settings.newsletter.title,
            languages=self.languages,
            t=lambda key, **values: self.text(language, key, **values),
        )

    def page(
        self,
        template: str,
        language: str,
        /,
        *,
        status: int = 200,
        indexable: bool = False,
        **context: Any,
    ) -> HTMLResponse:
        """An HTML answer; pages that carry a token or an address are never indexable."""
        robots = "index, follow" if indexable and self.settings.web.indexing else NOINDEX
        body = self.render(template, language, robots=robots, **context)
        headers = {"X-Robots-Tag": robots, "Cache-Control": "no-store"}
        return HTMLResponse(body, status_code=status, headers=headers)


def _css_value(value: str) -> str:
    """A config value made safe inside ``<style>``: no way out of the declaration or the element."""
    return "".join(ch for ch in value if ch not in "<>{};\\")
