"""Sending a reminder e-mail over SMTP (TANDEM_SMTP_*): the one adapter to a mail server.
No SMTP host configured, no e-mail: reminders are then shown in the app only."""

from __future__ import annotations

import smtplib
from dataclasses import dataclass
from email.message import EmailMessage

from tandem.settings import Settings

TIMEOUT_SECONDS = 20


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    sender: str
    user: str = ""
    password: str = ""
    starttls: bool = True


def smtp_config(settings: Settings) -> SmtpConfig | None:
    """The mail server from the settings, or None when no SMTP host is set."""
    if not settings.smtp_host:
        return None
    return SmtpConfig(
        host=settings.smtp_host,
        port=settings.smtp_port,
        sender=settings.smtp_from,
        user=settings.smtp_user,
        password=settings.smtp_password.get_secret_value(),
        starttls=settings.smtp_starttls,
    )


def send_mail(config: SmtpConfig, to: str, subject: str, body: str) -> None:
    """Send one plain-text e-mail; raises on any failure (the caller records it)."""
    message = EmailMessage()
    message["From"] = config.sender
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    with smtplib.SMTP(config.host, config.port, timeout=TIMEOUT_SECONDS) as smtp:
        if config.starttls:
            smtp.starttls()
        if config.user:
            smtp.login(config.user, config.password)
        smtp.send_message(message)
