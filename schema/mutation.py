from __future__ import annotations

import strawberry

from schema.mutations.accounts import AccountMutations
from schema.mutations.members import MemberMutations


@strawberry.type
class Mutation(AccountMutations, MemberMutations):
    """One mixin per feature."""
