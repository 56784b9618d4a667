"""The shape of GraphQL-over-WebSocket frames, checked before strawberry reads them.

strawberry indexes a frame as the protocol describes it (``message["payload"]["query"]``)
and catches only a missing key, on graphql-transport-ws alone: a frame that is no
object, an id that is no string or a payload that is no object crashed the socket's
handler (close 1006 and a traceback), signed in or not. Such a frame is the client's
error: both protocols' sockets close with 4400 and the reason this gives.
"""

from __future__ import annotations

from collections.abc import Mapping

INVALID_FRAME = 4400  # graphql-transport-ws: "invalid message"

# The frames each protocol's client sends that carry an operation id.
_TRANSPORT_WS_WITH_ID = frozenset({"subscribe", "complete"})
_LEGACY_WS_WITH_ID = frozenset({"start", "stop"})
# The optional members of a subscribe/start payload and the JSON type each must have.
_OPTIONAL_MEMBERS: tuple[tuple[str, type], ...] = (
    ("query", str),  # null is told "no query" with its code (BAD_REQUEST)
    ("operationName", str),
    ("variables", dict),
    ("extensions", dict),
)


def transport_ws_problem(frame: object) -> str | None:
    """Why a graphql-transport-ws frame cannot be read, or None when it can."""
    return _problem(frame, _TRANSPORT_WS_WITH_ID, start="subscribe")


def legacy_ws_problem(frame: object) -> str | None:
    """Why a graphql-ws (subscriptions-transport-ws) frame cannot be read, or None."""
    return _problem(frame, _LEGACY_WS_WITH_ID, start="start")


def _problem(frame: object, with_id: frozenset[str], start: str) -> str | None:
    if not isinstance(frame, Mapping):
        return "The message must be a JSON object."
    kind = frame.get("type")
    if not isinstance(kind, str):
        return 'The message needs a "type" string.'
    if kind in with_id and not isinstance(frame.get("id"), str):
        return f'A "{kind}" message needs an "id" string.'
    if kind != start:
        return None
    payload = frame.get("payload")
    if not isinstance(payload, Mapping):
        return f'A "{kind}" message needs a "payload" object.'
    if "query" not in payload:
        return f'A "{kind}" message\'s payload needs a "query".'
    for member, kind_of_value in _OPTIONAL_MEMBERS:
        value = payload.get(member)
        if value is not None and not isinstance(value, kind_of_value):
            return f'The payload\'s "{member}" has the wrong type.'
    return None
