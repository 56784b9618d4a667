"""The full-text function plans its query once per connection, not on every call.

``chunk_text_matches`` (migrations 0003 and 0008) is a SQL function with a ``SET``
clause, so PostgreSQL never inlines it: it runs the body through the plan cache, which
makes a custom plan for each call's tsquery as long as that looks cheaper than a generic
one, and it kept doing so. Planning was about a quarter of what the function cost. The
generic plan is the same bitmap scan of the GIN index that the custom plans chose for
the questions that match few chunks (most of them), and no worse for a common word:
every match is still found, and at most ``$2`` of them ranked.

Over 400 of the query bench's questions at 100,000 chunks (PostgreSQL backend CPU per
read-only transaction holding the full-text statement): 1.08 ms before, 0.93 ms with
this setting, 0.78 ms with it and the outer statement's limit written as a literal
(``chunk_search.py``), which lets that statement go generic too. Over 2,000 questions
the ranked results were the same but for three one-word questions matching more than
``$2`` chunks, whose first ``$2`` matches (an arbitrary set either way) differ.

Revision ID: 0010_fulltext_generic_plan
Revises: 0009_fulltext_no_pending_list
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010_fulltext_generic_plan"
down_revision: str | None = "0009_fulltext_no_pending_list"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FUNCTION = "chunk_text_matches(tsquery, integer, uuid[])"


def upgrade() -> None:
    op.execute(f"ALTER FUNCTION {_FUNCTION} SET plan_cache_mode = force_generic_plan")


def downgrade() -> None:
    op.execute(f"ALTER FUNCTION {_FUNCTION} RESET plan_cache_mode")
