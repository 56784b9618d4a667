from __future__ import annotations

import strawberry

from resolvers import documents
from schema.permissions import IsAuthenticated
from schema.types.document import Document, UploadOutcome


@strawberry.type
class DocumentMutations:
    upload_documents: list[UploadOutcome] = strawberry.mutation(
        resolver=documents.upload_documents,
        permission_classes=[IsAuthenticated],
        description="Upload files (GraphQL multipart request; send X-Requested-With: foundry).",
    )
    delete_document: bool = strawberry.mutation(
        resolver=documents.delete_document,
        permission_classes=[IsAuthenticated],
        description="Delete a document with its chunks, vectors and stored file.",
    )
    reprocess_document: Document = strawberry.mutation(
        resolver=documents.reprocess_document,
        permission_classes=[IsAuthenticated],
        description="Run ingestion again for a document.",
    )
