from __future__ import annotations

from graphql import GraphQLError

from domain.entities import Role
from domain.errors import ErrorCode, NotFound
from schema.errors import MASKED_MESSAGE, classify, code_for_validation_message


def test_domain_errors_keep_their_code_and_details() -> None:
    error = GraphQLError("x", original_error=NotFound("No such member.", field="userId"))
    shown = classify(error, "rid")
    assert shown.message == "No such member."
    assert shown.extensions == {"code": "NOT_FOUND", "field": "userId"}


def test_unexpected_errors_are_masked() -> None:
    shown = classify(GraphQLError("boom", original_error=KeyError("secret")), "rid-1")
    assert shown.message == MASKED_MESSAGE
    assert shown.extensions == {"code": "INTERNAL", "requestId": "rid-1"}


def test_validation_messages_map_to_codes() -> None:
    assert (
        code_for_validation_message("'q' exceeds maximum operation depth of 3")
        == ErrorCode.QUERY_TOO_DEEP
    )
    assert (
        code_for_validation_message("21 aliases found. Allowed: 20") == ErrorCode.TOO_MANY_ALIASES
    )
    assert (
        code_for_validation_message("Cannot query field 'x'") == ErrorCode.GRAPHQL_VALIDATION_FAILED
    )


def test_every_code_is_screaming_snake_case() -> None:
    for code in ErrorCode:
        assert code.value == code.name and code.value.upper() == code.value


def test_role_order() -> None:
    assert Role.ADMIN.allows(Role.EDITOR) and Role.EDITOR.allows(Role.VIEWER)
    assert not Role.VIEWER.allows(Role.EDITOR)
