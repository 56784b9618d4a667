from __future__ import annotations

import strawberry

from schema.mutations.accounts import AccountMutations
from schema.mutations.api_keys import ApiKeyMutations
from schema.mutations.chats import ChatMutations
from schema.mutations.documents import DocumentMutations
from schema.mutations.members import MemberMutations


@strawberry.type
class Mutation(
    AccountMutations, MemberMutations, DocumentMutations, ChatMutations, ApiKeyMutations
):
    """One mixin per feature."""
