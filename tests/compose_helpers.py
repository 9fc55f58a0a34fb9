"""A rendered issue and settings for the per-recipient message tests."""

from __future__ import annotations

from pathlib import Path

from digest.config import NewsletterSettings, Settings, WebSettings
from digest.models import NAME_MARKER, UNSUBSCRIBE_MARKER, RenderedIssue

TOKEN = "Zm9vYmFyYmF6cXV4MTIzNA"


def compose_settings(tmp_path: Path, **newsletter: str) -> Settings:
    """Settings for the per-recipient message: a newsletter with typographic names, a web URL."""
    return Settings(
        path=tmp_path / "digest.toml",
        newsletter=NewsletterSettings(
            title="La veille de l’École",
            from_name="L’École — la veille",
            from_address="veille@ecole.example",
            **newsletter,
        ),
        web=WebSettings(base_url="https://digest.ecole.example/"),
    )


def mjml_like_html() -> str:
    """One huge line, as MJML writes, with the markers where the template puts them."""
    cards = "".join(
        f'<tr><td style="padding:0 28px"><h2>Article {i} : « Ce que cela nous apprend »</h2>'
        f"<p>Résumé {i} — l’IA générative change le métier ; {'texte ' * 40}</p></td></tr>"
        for i in range(90)
    )
    return (
        '<!doctype html><html lang="fr"><body><div>Bonjour '
        + NAME_MARKER
        + ",</div><table>"
        + cards
        + f'</table><a href="{UNSUBSCRIBE_MARKER}">Se désabonner</a>'
        + "\n.\nFrom the team\n"
        + "<p>"
        + "a" * 72
        + ".ian.example/"
        + "b" * 69
        + "From here</p></body></html>"
    )


RENDERED = RenderedIssue(
    subject="La veille — semaine 48 : « L’IA et nous »",
    preheader="Cette semaine",
    html=mjml_like_html(),
    text=f"Bonjour {NAME_MARKER},\n\nÀ lire.\n\nDésabonnement : {UNSUBSCRIBE_MARKER}\n",
)
