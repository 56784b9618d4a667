"""Input rules shared by services: emails, passwords, display names."""

from __future__ import annotations

import unicodedata

from email_validator import EmailNotValidError, validate_email

from domain.errors import ValidationFailed, WeakPassword

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 256
MAX_EMAIL_LENGTH = 254
MAX_NAME_LENGTH = 100


def normalize_email(raw: str) -> str:
    """A syntactically valid email, lower-cased, or ValidationFailed."""
    candidate = raw.strip()
    if not candidate or len(candidate) > MAX_EMAIL_LENGTH:
        raise ValidationFailed("Enter a valid email address.", field="email")
    try:
        result = validate_email(candidate, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValidationFailed("Enter a valid email address.", field="email") from exc
    return result.normalized.lower()


def check_password_policy(password: str, email: str) -> None:
    """Length between 10 and 256 characters, not the email or its local part."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"Passwords need at least {MIN_PASSWORD_LENGTH} characters.")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"Passwords can have at most {MAX_PASSWORD_LENGTH} characters.")
    folded = password.strip().casefold()
    local_part = email.split("@", 1)[0].casefold()
    if folded in {email.casefold(), local_part}:
        raise WeakPassword("The password must not be your email address.")
    if len(set(folded)) == 1:
        raise WeakPassword("The password must not repeat a single character.")


def clean_name(raw: str, field: str) -> str:
    """A display name: trimmed, 1-100 characters, no control characters."""
    name = " ".join(raw.split())
    if not name or len(name) > MAX_NAME_LENGTH:
        raise ValidationFailed(f"{field} must have 1 to {MAX_NAME_LENGTH} characters.", field=field)
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        raise ValidationFailed(f"{field} must not contain control characters.", field=field)
    return name
