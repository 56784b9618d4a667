"""Depth and alias limits that expand fragments in linear time.

strawberry's QueryDepthLimiter and MaxAliasesLimiter walk every fragment spread
again each time it is used: twenty fragments that each spread the next one
twice cost them 2^20 walks (seconds of CPU for a 300-token request). Here each
fragment is measured once and its (depth, aliases) reused wherever it is
spread, so the totals still count every expansion.
"""

from __future__ import annotations

from dataclasses import dataclass

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
)


@dataclass(frozen=True, slots=True)
class Size:
    depth: int
    aliases: int


_EMPTY = Size(0, 0)


class _Measure:
    def __init__(self, document: DocumentNode) -> None:
        self._fragments = {
            definition.name.value: definition
            for definition in document.definitions
            if isinstance(definition, FragmentDefinitionNode)
        }
        self._sizes: dict[str, Size] = {}
        self._measuring: set[str] = set()

    def selection_set(self, selection_set: SelectionSetNode | None) -> Size:
        depth = aliases = 0
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                inner = self.selection_set(selection.selection_set)
                aliases += inner.aliases + (1 if selection.alias else 0)
                # Introspection fields do not count towards depth (as in strawberry).
                if selection.selection_set and not selection.name.value.startswith("__"):
                    depth = max(depth, 1 + inner.depth)
            elif isinstance(selection, InlineFragmentNode):
                inner = self.selection_set(selection.selection_set)
                depth, aliases = max(depth, inner.depth), aliases + inner.aliases
            elif isinstance(selection, FragmentSpreadNode):
                inner = self.fragment(selection.name.value)
                depth, aliases = max(depth, inner.depth), aliases + inner.aliases
        return Size(depth, aliases)

    def fragment(self, name: str) -> Size:
        if name in self._sizes:
            return self._sizes[name]
        definition = self._fragments.get(name)
        if definition is None or name in self._measuring:
            return _EMPTY  # unknown fragments and cycles are reported by graphql-core
        self._measuring.add(name)
        size = self.selection_set(definition.selection_set)
        self._measuring.discard(name)
        self._sizes[name] = size
        return size


def document_limits_rule(max_depth: int, max_aliases: int) -> type[ValidationRule]:
    """A validation rule refusing operations deeper than ``max_depth`` or with more than
    ``max_aliases`` aliases, fragments expanded (messages match strawberry's limiters)."""

    class DocumentLimits(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            measure = _Measure(context.document)
            aliases = 0
            for definition in context.document.definitions:
                if not isinstance(definition, OperationDefinitionNode):
                    continue
                size = measure.selection_set(definition.selection_set)
                aliases += size.aliases
                if size.depth > max_depth:
                    name = definition.name.value if definition.name else "anonymous"
                    context.report_error(
                        GraphQLError(
                            f"'{name}' exceeds maximum operation depth of {max_depth}",
                            definition,
                        )
                    )
            if aliases > max_aliases:
                context.report_error(
                    GraphQLError(f"{aliases} aliases found. Allowed: {max_aliases}")
                )

    return DocumentLimits
