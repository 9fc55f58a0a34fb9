"""Which picture leads an article: never a tracking pixel, never an icon.

    lead_image(url, alt, html) -> (url, alt)     ("", "") when no picture is worth showing

Feeds put counters in their entries: a 1×1 GIF from the feed service or an
analytics host, first in the HTML or as the entry's media. Taken as the lead
image, it would be shown at full width in every email and in the archive, and
every reader who opens the email would report to that host. So a candidate is
skipped when it declares a tiny size (``width``/``height`` attributes, or
sizes written in its URL) or comes from a known tracking host or path; the
next picture of the entry's HTML is tried instead.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

import lxml.html
from lxml.etree import ParserError

__all__ = ["is_tracking_image", "lead_image"]

MIN_SIDE = 50
"""Pixels. Anything narrower or shorter is a pixel, a spacer or an icon, not a picture."""

# Hosts that serve counters and feed-service beacons rather than pictures. Not a
# blocklist of the web: the ones feeds are known to carry, kept short on purpose.
_TRACKING_HOSTS = (
    "feeds.feedburner.com",  # FeedBurner's per-item counter (~r/…/~4/…)
    "feedproxy.google.com",  # FeedBurner's proxy, same counters
    "feeds.feedblitz.com",  # FeedBlitz's per-item beacon
    "pixel.wp.com",  # WordPress.com / Jetpack stats
    "stats.wordpress.com",
    "google-analytics.com",
    "doubleclick.net",
    "scorecardresearch.com",
    "quantserve.com",
    "feedsportal.com",
)
# A path segment (its name without extension) that names a counter, not a picture.
_TRACKING_NAMES = {
    "pixel",
    "tracker",
    "tracking",
    "track",
    "beacon",
    "spacer",
    "blank",
    "transparent",
    "1x1",
}
_SIZE_IN_NAME = re.compile(r"(?<![0-9])([0-9]{1,4})x([0-9]{1,4})(?![0-9])")
_SIZE_PARAMS = {"w", "width", "h", "height"}


def is_tracking_image(url: str, width: str = "", height: str = "") -> bool:
    """Whether ``url`` (with the sizes its ``<img>`` declares) is a counter, not a picture."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return True
    host = (parts.hostname or "").lower()
    if any(host == h or host.endswith("." + h) for h in _TRACKING_HOSTS):
        return True
    segments = [s for s in parts.path.lower().split("/") if s]
    if any(s.rpartition(".")[0] in _TRACKING_NAMES or s in _TRACKING_NAMES for s in segments):
        return True
    name = segments[-1] if segments else ""
    sized = _SIZE_IN_NAME.search(name)
    if sized and min(int(sized.group(1)), int(sized.group(2))) < MIN_SIDE:
        return True
    declared = [width, height]
    declared += [v for k, v in parse_qsl(parts.query) if k.lower() in _SIZE_PARAMS]
    return any(_tiny(value) for value in declared)


def _tiny(value: str) -> bool:
    """A declared size under ``MIN_SIDE`` (``"1"``, ``"1px"``, ``"0"``); percentages are fine."""
    match = re.fullmatch(r"\s*([0-9]+)(?:\.[0-9]*)?\s*(?:px)?\s*", value or "")
    return match is not None and int(match.group(1)) < MIN_SIDE


def lead_image(url: str, alt: str, html: str) -> tuple[str, str]:
    """The entry's chosen picture if it is a real one, else the first real one in ``html``.

    ``url`` is what the feed or the page offered (media, enclosure, first ``<img>``,
    ``og:image``); ``html`` is the entry's sanitized HTML, whose ``<img>`` tags say
    the sizes the feed declared.
    """
    images = _images(html)
    if url:
        declared = next(((w, h) for src, _, w, h in images if src == url), ("", ""))
        if not is_tracking_image(url, *declared):
            return url, alt
    for src, img_alt, width, height in images:
        real = src.startswith(("https://", "http://")) and not is_tracking_image(src, width, height)
        if src != url and real:
            return src, img_alt
    return "", ""


def _images(html: str) -> list[tuple[str, str, str, str]]:
    """(src, alt, width, height) of every ``<img>`` in ``html``, in order."""
    if "<img" not in html:
        return []
    try:
        nodes = lxml.html.fragments_fromstring(html)
    except (ParserError, ValueError):
        return []
    found = []
    for node in nodes:
        if isinstance(node, str):
            continue
        for img in node.iter("img"):
            found.append(
                (
                    (img.get("src") or "").strip(),
                    img.get("alt") or "",
                    img.get("width") or "",
                    img.get("height") or "",
                )
            )
    return found
