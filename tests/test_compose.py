"""The per-recipient message: structure, headers, encodings, personalization, DKIM."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import re
from email.message import EmailMessage
from pathlib import Path

import pytest
from compose_helpers import RENDERED, TOKEN, compose_settings

from digest.compose import MessageFactory, unsubscribe_url
from digest.config import NewsletterSettings, SendSettings
from digest.errors import ConfigError
from digest.models import Subscriber


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_structure_is_multipart_alternative_text_then_html(tmp_path: Path) -> None:
    raw = MessageFactory(RENDERED, compose_settings(tmp_path)).build(
        Subscriber(email="lea@exemple.fr", name="Léa"), TOKEN
    )
    message = parse(raw)
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    for part in parts:
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] == "quoted-printable"
    assert message["MIME-Version"] == "1.0"


def test_wire_format_crlf_and_short_lines(tmp_path: Path) -> None:
    long_names = dataclasses.replace(
        compose_settings(tmp_path).newsletter, from_name="Institut des Arts et du Numérique de Lyon"
    )
    raw = MessageFactory(
        RENDERED, dataclasses.replace(compose_settings(tmp_path), newsletter=long_names)
    ).build(Subscriber(email="lea@exemple.fr", name="Léa " * 60), TOKEN)
    assert len(RENDERED.html) > 30_000 and "\n" not in RENDERED.html[:30_000]
    assert b"\r\n" in raw
    assert b"\n" not in raw.replace(b"\r\n", b""), "bare LF on the wire"
    assert b"\r" not in raw.replace(b"\r\n", b""), "bare CR on the wire"
    head, body = raw.split(b"\r\n\r\n", 1)
    assert max(len(line) for line in head.split(b"\r\n")) <= 78  # RFC 5322 SHOULD
    assert max(len(line) for line in body.split(b"\r\n")) <= 76  # RFC 2045 MUST
    assert raw.isascii()  # everything encoded: no 8-bit data for an ASCII recipient
    # No body line starts with a dot or "From ": dot-stuffing and mbox never alter it.
    assert not re.search(rb"(?m)^(\.|From )", body)


def test_every_message_goes_into_data_as_it_is(tmp_path: Path) -> None:
    # The sender writes the factory's bytes without scanning them for lines to
    # dot-stuff (RFC 5321 4.5.2): no line may start with a dot, wherever the dot
    # comes from (the text, a name, a line break landing before a dot),
    # and the message ends with CRLF.
    dotted = dataclasses.replace(
        RENDERED,
        text=".\n..\n. point\n" + RENDERED.text + "\n.",
        html=".<p>.</p>\n." + RENDERED.html,
    )
    factory = MessageFactory(dotted, compose_settings(tmp_path))
    for name in (".", ". Léa", "Léa" + "." * 200, ""):
        raw = factory.build(Subscriber(email="lea@exemple.fr", name=name), TOKEN)
        assert not re.search(rb"(?m)^\.", raw), name
        assert raw.endswith(b"\r\n")
        text_part, _ = parse(raw).iter_parts()
        assert text_part.get_content().replace("\r\n", "\n").startswith(".\n..\n. point\n")


def test_personalized_parts_say_what_personalize_says(tmp_path: Path) -> None:
    factory = MessageFactory(RENDERED, compose_settings(tmp_path))
    for name in ("Léa", "Tom & <Jerry>", "=3D soft=\nbreak", ""):
        raw = factory.build(Subscriber(email="lea@exemple.fr", name=name), TOKEN)
        text_part, html_part = parse(raw).iter_parts()
        clean_name = " ".join(name.split())
        expected = RENDERED.personalize(clean_name, unsubscribe_url(factory.settings, TOKEN))
        assert html_part.get_content().replace("\r\n", "\n") == expected.html
        assert text_part.get_content().replace("\r\n", "\n") == expected.text
    assert expected.text.startswith("Bonjour,")  # no name: no dangling space


def test_headers(tmp_path: Path) -> None:
    factory = MessageFactory(
        RENDERED, compose_settings(tmp_path, reply_to="redaction@ecole.example", list_id="")
    )
    raw = factory.build(Subscriber(email="lea@exemple.fr", name="Léa Dupré"), TOKEN)
    message = parse(raw)
    assert message["Subject"] == RENDERED.subject
    assert b"Subject: =?utf-8?" in raw  # RFC 2047 on the wire
    assert message["From"].addresses[0].display_name == "L’École — la veille"
    assert message["From"].addresses[0].addr_spec == "veille@ecole.example"
    assert [a.addr_spec for a in message["To"].addresses] == ["lea@exemple.fr"]
    assert message["To"].addresses[0].display_name == "Léa Dupré"
    assert message["Date"].datetime is not None
    assert re.fullmatch(r"<[0-9a-f]{32}@ecole\.example>", message["Message-ID"])
    assert message["Reply-To"] == "redaction@ecole.example"
    assert message["Precedence"] == "bulk"
    assert message["List-Id"].endswith("<veille.ecole.example>")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = " ".join(message["List-Unsubscribe"].split())
    assert unsubscribe == (
        f"<https://digest.ecole.example/u/{TOKEN}>, "
        "<mailto:veille@ecole.example?subject=unsubscribe>"
    )
    other = factory.build(Subscriber(email="lea@exemple.fr", name="Léa"), TOKEN)
    assert parse(other)["Message-ID"] != message["Message-ID"]


def test_configured_list_id_and_unsubscribe_mailto(tmp_path: Path) -> None:
    factory = MessageFactory(
        RENDERED,
        compose_settings(
            tmp_path, list_id="veille.ecole.example", unsubscribe_mailto="stop@ecole.example"
        ),
    )
    message = parse(factory.build(Subscriber(email="a@exemple.fr"), TOKEN))
    assert message["List-Id"] == "La veille de l’École <veille.ecole.example>"
    assert "<mailto:stop@ecole.example?subject=unsubscribe>" in message["List-Unsubscribe"]
    assert message["To"] == "a@exemple.fr"


def test_no_header_injection_from_names_or_subject(tmp_path: Path) -> None:
    rendered = dataclasses.replace(RENDERED, subject="Semaine 48\r\nBcc: all@victim.example")
    factory = MessageFactory(rendered, compose_settings(tmp_path))
    raw = factory.build(
        Subscriber(
            email="lea@exemple.fr", name="Léa\r\nBcc: evil@attacker.example\r\n\r\n<script>"
        ),
        TOKEN,
    )
    message = parse(raw)
    assert message["Bcc"] is None
    header_names = [line.split(b":")[0] for line in raw.split(b"\r\n\r\n")[0].split(b"\r\n")]
    assert b"Bcc" not in header_names
    html = list(message.iter_parts())[1].get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html
    with pytest.raises(ValueError):
        factory.build(Subscriber(email="a@exemple.fr\r\nBcc: x@y.example"), TOKEN)
    with pytest.raises(ValueError):
        factory.build(Subscriber(email="a@exemple.fr"), "bad token\r\nX: y")


def test_unicode_address_goes_out_as_utf8(tmp_path: Path) -> None:
    factory = MessageFactory(RENDERED, compose_settings(tmp_path))
    raw = factory.build(Subscriber(email="zoé@xn--caf-dma.example", name="Zoé"), TOKEN)
    assert factory.needs_smtputf8("zoé@xn--caf-dma.example")
    assert not factory.needs_smtputf8("zoe@xn--caf-dma.example")
    assert "zoé@xn--caf-dma.example".encode() in raw


def test_only_the_recipient_address_appears(tmp_path: Path) -> None:
    factory = MessageFactory(RENDERED, compose_settings(tmp_path))
    first = factory.build(Subscriber(email="first@exemple.fr", name="First"), TOKEN)
    second = factory.build(Subscriber(email="second@exemple.fr", name="Second"), "T" * 22)
    assert b"first@exemple.fr" not in second and TOKEN.encode() not in second
    assert b"second@exemple.fr" not in first


def test_bad_sender_configuration_is_a_config_error(tmp_path: Path) -> None:
    bad = dataclasses.replace(
        compose_settings(tmp_path),
        newsletter=NewsletterSettings(from_address="veille@ecole.example\r\nBcc: x@y.z"),
    )
    with pytest.raises(ConfigError, match="from_address"):
        MessageFactory(RENDERED, bad)


def test_dkim_signature_covers_list_unsubscribe_and_verifies(tmp_path: Path) -> None:
    import base64

    import dkim
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key = tmp_path / "dkim.pem"
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    signed = dataclasses.replace(
        compose_settings(tmp_path),
        send=SendSettings(dkim_selector="mail", dkim_private_key_file=Path("dkim.pem")),
    )
    raw = MessageFactory(RENDERED, signed).build(Subscriber(email="a@exemple.fr", name="A"), TOKEN)
    assert raw.startswith(b"DKIM-Signature:")
    header = parse(raw)["DKIM-Signature"].replace(" ", "")
    assert "d=ecole.example" in header and "s=mail" in header
    signed_headers = re.search(r"h=([^;]+)", header).group(1).lower().split(":")  # type: ignore[union-attr]
    assert {"list-unsubscribe", "list-unsubscribe-post", "from", "subject"} <= set(signed_headers)

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"mail._domainkey.ecole.example."
        return record

    assert dkim.verify(raw, dnsfunc=dns)
    tampered = raw.replace(b"List-Unsubscribe: <https", b"List-Unsubscribe: <http")
    assert not dkim.verify(tampered, dnsfunc=dns)


def test_dkim_needs_both_selector_and_key(tmp_path: Path) -> None:
    half = dataclasses.replace(compose_settings(tmp_path), send=SendSettings(dkim_selector="mail"))
    with pytest.raises(ConfigError, match="dkim_selector and dkim_private_key_file"):
        MessageFactory(RENDERED, half)
    missing = dataclasses.replace(
        compose_settings(tmp_path),
        send=SendSettings(dkim_selector="mail", dkim_private_key_file=Path("nope.pem")),
    )
    with pytest.raises(ConfigError, match="cannot read"):
        MessageFactory(RENDERED, missing)
