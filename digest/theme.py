"""The email's colours: the configured brand colours and what is derived from them.

An editor sets ``primary_color`` and a few others in ``[render]``; the tints, the
colour of text on the brand colour and the whole dark palette are computed here
(WCAG 2 contrast), so a new brand needs no template edit and stays readable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .config import Settings
from .richtext import safe_url

__all__ = ["Theme", "contrast_ratio", "relative_luminance"]


@dataclass(frozen=True)
class Theme:
    """Colours and type the templates use, derived from ``[render]``.

    The derived colours (tints, the dark palette) are computed here rather than
    written in the templates, so an editor who changes ``primary_color`` gets a
    matching lessons block and dark mode without touching a template.
    """

    primary_color: str
    text_color: str
    background_color: str
    card_color: str
    font_family: str
    muted_color: str
    on_primary_color: str
    tint_color: str
    dark_background: str
    dark_card: str
    dark_text: str
    dark_muted: str
    dark_primary: str
    dark_tint: str
    logo_url: str
    logo_alt: str
    archive_url: str

    @classmethod
    def from_settings(cls, settings: Settings, logo_alt_default: str) -> Theme:
        render = settings.render
        primary = render.primary_color
        dark_card = "#1f1d1b"
        return cls(
            primary_color=primary,
            text_color=render.text_color,
            background_color=render.background_color,
            card_color=render.card_color,
            font_family=render.font_family,
            muted_color=_mix(render.text_color, render.card_color, 0.75, "#5c5650"),
            on_primary_color=_readable_on(primary),
            tint_color=_mix(primary, render.card_color, 0.07, "#f8efed"),
            dark_background="#121110",
            dark_card=dark_card,
            dark_text="#eeeae5",
            dark_muted="#bdb6ad",
            dark_primary=_mix(primary, "#ffffff", 0.45, "#f2a49e"),
            dark_tint=_mix(primary, dark_card, 0.22, "#3a2523"),
            logo_url=safe_url(render.logo_url),
            logo_alt=render.logo_alt or logo_alt_default,
            archive_url=safe_url(render.archive_url),
        )


def _rgb(colour: str) -> tuple[int, int, int] | None:
    value = colour.strip().lstrip("#")
    if len(value) == 3:
        value = "".join(c * 2 for c in value)
    if len(value) != 6 or not re.fullmatch(r"[0-9a-fA-F]{6}", value):
        return None
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def _mix(colour: str, other: str, weight: float, fallback: str) -> str:
    """``weight`` of ``colour`` over ``other``; ``fallback`` when either is not #rgb/#rrggbb."""
    a, b = _rgb(colour), _rgb(other)
    if a is None or b is None:
        return fallback
    mixed = (round(x * weight + y * (1 - weight)) for x, y in zip(a, b, strict=True))
    return "#" + "".join(f"{c:02x}" for c in mixed)


def relative_luminance(colour: str) -> float:
    """WCAG 2 relative luminance of a #rrggbb colour."""
    rgb = _rgb(colour)
    if rgb is None:
        raise ValueError(f"not a hex colour: {colour!r}")

    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(foreground: str, background: str) -> float:
    """WCAG 2 contrast ratio; 4.5 is the floor for body text."""
    a, b = relative_luminance(foreground), relative_luminance(background)
    return (max(a, b) + 0.05) / (min(a, b) + 0.05)


def _readable_on(background: str) -> str:
    """White or near-black, whichever reads better on ``background``."""
    if _rgb(background) is None:
        return "#ffffff"
    return max(("#ffffff", "#1a1a1a"), key=lambda c: contrast_ratio(c, background))
