"""Closing a subscription's generator closes the resolver's generator under it at once,
so its cleanup (stopping generation, freeing the user's slot) has run by the time the
operation counts as ended, not later from the garbage collector."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import cast

import pytest
from strawberry.types.base import get_object_definition

from resolvers import answers, documents
from schema.context import Info
from schema.subscription import Subscription


@pytest.mark.parametrize(
    ("module", "name", "args"),
    [
        (answers, "answer", ("chat", "question?")),
        (documents, "document_events", ()),
    ],
)
async def test_closing_the_subscription_closes_its_resolver(
    monkeypatch: pytest.MonkeyPatch, module: object, name: str, args: tuple[str, ...]
) -> None:
    closed: list[str] = []

    async def resolver(*_: object) -> AsyncGenerator[str, None]:
        try:
            yield "first"
            yield "second"
        finally:
            closed.append(name)

    monkeypatch.setattr(module, name, resolver)
    field = get_object_definition(Subscription, strict=True).get_field(name)
    assert field is not None and field.base_resolver is not None
    subscribe = cast(Callable[..., AsyncGenerator[str, None]], field.base_resolver.wrapped_func)
    stream = subscribe(Subscription(), cast(Info, None), *args)
    assert await anext(stream) == "first"

    await stream.aclose()

    assert closed == [name]
