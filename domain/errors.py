"""The one registry of error codes clients see in ``extensions.code``.

Every expected failure raises a :class:`DomainError` subclass carrying one of
these codes; the GraphQL layer copies the code into the error's extensions and
masks everything else as ``INTERNAL``.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Stable, SCREAMING_SNAKE_CASE codes; never rename one clients rely on."""

    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"
    VALIDATION_FAILED = "VALIDATION_FAILED"
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    EMAIL_TAKEN = "EMAIL_TAKEN"
    SIGNUP_CLOSED = "SIGNUP_CLOSED"  # the operator closed sign-up (FOUNDRY_SIGNUP=closed)
    WEAK_PASSWORD = "WEAK_PASSWORD"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    INVALID_REFRESH_TOKEN = "INVALID_REFRESH_TOKEN"
    REFRESH_TOKEN_REUSED = "REFRESH_TOKEN_REUSED"
    ALREADY_MEMBER = "ALREADY_MEMBER"
    LAST_ADMIN = "LAST_ADMIN"
    RATE_LIMITED = "RATE_LIMITED"
    CSRF_CHECK_FAILED = "CSRF_CHECK_FAILED"
    REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"
    QUERY_TOO_DEEP = "QUERY_TOO_DEEP"
    TOO_MANY_ALIASES = "TOO_MANY_ALIASES"
    TOO_MANY_TOKENS = "TOO_MANY_TOKENS"
    GRAPHQL_PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
    GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
    BATCHING_NOT_SUPPORTED = "BATCHING_NOT_SUPPORTED"
    BAD_REQUEST = "BAD_REQUEST"  # an HTTP request that is no GraphQL request at all
    UNSUPPORTED_FILE_TYPE = "UNSUPPORTED_FILE_TYPE"
    FILE_TOO_LARGE = "FILE_TOO_LARGE"
    DUPLICATE_DOCUMENT = "DUPLICATE_DOCUMENT"
    TOO_MANY_FILES = "TOO_MANY_FILES"
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"  # the organisation's storage or document quota
    PARSE_FAILED = "PARSE_FAILED"
    PARSE_TIMEOUT = "PARSE_TIMEOUT"
    ENCRYPTED_PDF = "ENCRYPTED_PDF"
    EMPTY_DOCUMENT = "EMPTY_DOCUMENT"
    NO_TEXT_LAYER = "NO_TEXT_LAYER"  # a PDF with pages but no text (scans): OCR needed
    DOCUMENT_TOO_LARGE = "DOCUMENT_TOO_LARGE"
    PROCESSING_TIMEOUT = "PROCESSING_TIMEOUT"
    PROCESSING_FAILED = "PROCESSING_FAILED"
    STORED_FILE_MISSING = "STORED_FILE_MISSING"  # a document's stored file stayed missing
    EMBEDDING_UNAVAILABLE = "EMBEDDING_UNAVAILABLE"
    EMBEDDING_REJECTED = "EMBEDDING_REJECTED"
    LLM_UNAVAILABLE = "LLM_UNAVAILABLE"
    QUESTION_TOO_LONG = "QUESTION_TOO_LONG"
    WEBSOCKET_REQUIRED = "WEBSOCKET_REQUIRED"
    TOO_MANY_OPERATIONS = "TOO_MANY_OPERATIONS"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    INTERNAL = "INTERNAL"


class DomainError(Exception):
    """An expected failure with a code from the registry and a human message."""

    code: ErrorCode = ErrorCode.INTERNAL
    default_message: str = "The request failed."

    def __init__(self, message: str | None = None, **details: str | int | float | bool) -> None:
        self.message = message or self.default_message
        self.details = details
        super().__init__(self.message)


class Unauthenticated(DomainError):
    code = ErrorCode.UNAUTHENTICATED
    default_message = "Authentication required."


class TokenExpired(DomainError):
    code = ErrorCode.TOKEN_EXPIRED
    default_message = "The access token has expired; refresh the session."


class Forbidden(DomainError):
    code = ErrorCode.FORBIDDEN
    default_message = "Your role does not allow this."


class NotFound(DomainError):
    code = ErrorCode.NOT_FOUND
    default_message = "Not found."


class ValidationFailed(DomainError):
    code = ErrorCode.VALIDATION_FAILED
    default_message = "The input is not valid."


class InvalidCredentials(DomainError):
    code = ErrorCode.INVALID_CREDENTIALS
    default_message = "Email or password is incorrect."


class EmailTaken(DomainError):
    code = ErrorCode.EMAIL_TAKEN
    default_message = "An account with this email already exists."


class SignUpClosed(DomainError):
    """The operator closed sign-up (FOUNDRY_SIGNUP=closed): only existing accounts log in."""

    code = ErrorCode.SIGNUP_CLOSED
    default_message = (
        "Sign-up is closed on this server; ask an admin of your organisation to arrange "
        "an account for you."
    )


class WeakPassword(DomainError):
    code = ErrorCode.WEAK_PASSWORD
    default_message = "The password does not meet the password policy."


class InvalidRefreshToken(DomainError):
    code = ErrorCode.INVALID_REFRESH_TOKEN
    default_message = "The refresh token is invalid or expired; log in again."


class RefreshTokenReused(DomainError):
    code = ErrorCode.REFRESH_TOKEN_REUSED
    default_message = "This refresh token was already used; the session has been revoked."


class AlreadyMember(DomainError):
    code = ErrorCode.ALREADY_MEMBER
    default_message = "This user is already a member of the organisation."


class LastAdmin(DomainError):
    code = ErrorCode.LAST_ADMIN
    default_message = "An organisation must keep at least one admin."


class ServiceUnavailable(DomainError):
    code = ErrorCode.SERVICE_UNAVAILABLE
    default_message = "A backing service is unavailable; try again shortly."


class FileTooLarge(DomainError):
    code = ErrorCode.FILE_TOO_LARGE
    default_message = "The file is larger than the upload limit."


class UnsupportedFileType(DomainError):
    code = ErrorCode.UNSUPPORTED_FILE_TYPE
    default_message = "Only PDF, DOCX, Markdown, HTML and plain-text files are accepted."


class DuplicateDocument(DomainError):
    code = ErrorCode.DUPLICATE_DOCUMENT
    default_message = "This file was already uploaded."


class TooManyFiles(DomainError):
    code = ErrorCode.TOO_MANY_FILES
    default_message = "Too many files in one request."


class QuotaExceeded(DomainError):
    """Storing the file would take the organisation past its quota of stored bytes or of
    documents (deleted documents do not count)."""

    code = ErrorCode.QUOTA_EXCEEDED
    default_message = "Your organisation has reached its storage limit."


class IngestionFailed(DomainError):
    """A document that cannot be ingested as it is; retrying will not help."""

    code = ErrorCode.PARSE_FAILED
    default_message = "The document could not be read."


class ParseFailed(IngestionFailed):
    code = ErrorCode.PARSE_FAILED


class ParseTimeout(IngestionFailed):
    code = ErrorCode.PARSE_TIMEOUT
    default_message = "Reading the document took longer than the time allowed."


class EncryptedPdf(IngestionFailed):
    code = ErrorCode.ENCRYPTED_PDF
    default_message = "The PDF is password-protected."


class EmptyDocument(IngestionFailed):
    code = ErrorCode.EMPTY_DOCUMENT
    default_message = "The document contains no text."


class NoTextLayer(IngestionFailed):
    """A PDF whose pages hold no extractable text, only images (a scan): distinct from
    EMPTY_DOCUMENT so that users know to run OCR before uploading it again."""

    code = ErrorCode.NO_TEXT_LAYER
    default_message = (
        "The PDF has pages but no text layer (scanned images?); this server does not run OCR."
    )


class DocumentTooLarge(IngestionFailed):
    code = ErrorCode.DOCUMENT_TOO_LARGE
    default_message = "The document has more pages or text than the limits allow."


class ProcessingFailed(IngestionFailed):
    """Every attempt at the document ended in an error nobody foresaw (a bug, or a fault
    that lasted); the worker's log has each one's traceback."""

    code = ErrorCode.PROCESSING_FAILED
    default_message = "The document could not be processed; try reprocessing it later."


class EmbeddingRejected(IngestionFailed):
    """The embedding provider refused the request for good (bad key, unknown model)."""

    code = ErrorCode.EMBEDDING_REJECTED
    default_message = "The embedding provider rejected the request; check its settings."


class StoredFileMissing(DomainError):
    """A live document's stored file is gone from the blob store: it cannot be downloaded
    nor reprocessed (its chunks, if any, still answer)."""

    code = ErrorCode.STORED_FILE_MISSING
    # Uploading the same file again would be refused as a duplicate of this document.
    default_message = "The document's stored file is missing; delete it and upload it again."


class StorageUnavailable(ServiceUnavailable):
    default_message = "The file could not be stored right now; try again."


class EmbeddingUnavailable(DomainError):
    """The embedding provider failed for a request that needs a question's embedding."""

    code = ErrorCode.EMBEDDING_UNAVAILABLE
    default_message = "The embedding model is unavailable; try again shortly."


class LlmUnavailable(DomainError):
    code = ErrorCode.LLM_UNAVAILABLE
    default_message = "The language model is unavailable; try again shortly."


class QuestionTooLong(DomainError):
    code = ErrorCode.QUESTION_TOO_LONG
    default_message = "The question is too long."


class RateLimited(DomainError):
    """A budget (per IP, email, user or organisation) is spent; ``retryAfter`` says when
    to try again, in whole seconds."""

    code = ErrorCode.RATE_LIMITED
    default_message = "Too many requests; try again later."

    def __init__(self, retry_after: int, message: str | None = None) -> None:
        super().__init__(message, retryAfter=max(1, retry_after))
        self.retry_after = max(1, retry_after)


class TransientFailure(Exception):
    """A dependency (database, Redis, embedding provider) failed; the job should retry."""
