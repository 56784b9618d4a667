from __future__ import annotations

import strawberry

from resolvers import api_keys
from schema.permissions import IsAdmin
from schema.types.api_key import ApiKey, CreatedApiKey


@strawberry.type
class ApiKeyMutations:
    create_api_key: CreatedApiKey = strawberry.mutation(
        resolver=api_keys.create_api_key,
        permission_classes=[IsAdmin],
        description="Create an API key for a server-to-server client; the key is shown once.",
    )
    revoke_api_key: ApiKey = strawberry.mutation(
        resolver=api_keys.revoke_api_key,
        permission_classes=[IsAdmin],
        description="Revoke an API key; requests with it fail from the next one on.",
    )
