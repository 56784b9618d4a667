from __future__ import annotations

import strawberry

from resolvers import chats
from schema.permissions import IsUser
from schema.types.chat import Chat, Message


@strawberry.type
class ChatMutations:
    create_chat: Chat = strawberry.mutation(
        resolver=chats.create_chat,
        permission_classes=[IsUser],
        description="Start a chat (titled after its first question unless you name it).",
    )
    rename_chat: Chat = strawberry.mutation(resolver=chats.rename_chat, permission_classes=[IsUser])
    delete_chat: bool = strawberry.mutation(
        resolver=chats.delete_chat,
        permission_classes=[IsUser],
        description="Delete a chat and all its messages.",
    )
    ask: Message = strawberry.mutation(
        resolver=chats.ask,
        permission_classes=[IsUser],
        description="Ask a question in a chat and get the whole stored answer at once "
        "(the `answer` subscription streams it instead).",
    )
