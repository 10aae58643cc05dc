"""How much one GraphQL document may ask of the server, checked before anything runs.

Tokens are counted while parsing, so an oversized document is never parsed in full. Depth,
aliases, directives and cost are measured on the parsed operation with every fragment spread
expanded (a fragment spread three times counts three times), before graphql-core validates
the document: a document over a limit reaches neither validation, the resolvers nor the
database.

Cost is counted in points. A report field (``mailFlow``, ``tlsBreakdown``, ``insights`` and a
connector's ``volume``, ``tlsBreakdown``, ``insights``) costs one point per day of its range;
a range the server cannot read before running the query counts as the longest range. Every
other field costs one point. Everything selected under ``connectors`` counts
``ASSUMED_CONNECTORS`` times, since how many connectors an organization has is not known
before the query runs.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLSyntaxError,
    InlineFragmentNode,
    NamedTypeNode,
    NullValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    StringValueNode,
    ValueNode,
    VariableNode,
    get_named_type,
    parse,
)
from graphql.language import Lexer, Source, TokenKind
from strawberry.extensions import ValidationCache

from mailflow.api.context import RequestContext
from mailflow.api.scalars import parse_date
from mailflow.errors import MailflowError
from mailflow.reports.ranges import DEFAULT_DAYS
from mailflow.settings import Settings, get_settings

ASSUMED_CONNECTORS = 10
REPORT_FIELDS = frozenset({
    ("Query", "mailFlow"),
    ("Query", "tlsBreakdown"),
    ("Query", "insights"),
    ("Connector", "volume"),
    ("Connector", "tlsBreakdown"),
    ("Connector", "insights"),
})
LIST_WEIGHTS = {("Query", "connectors"): ASSUMED_CONNECTORS}


class TooManyTokensError(MailflowError):
    """A document holds more tokens than the server parses."""

    code = "TOO_MANY_TOKENS"


class QueryTooDeepError(MailflowError):
    """An operation nests fields deeper than allowed."""

    code = "QUERY_TOO_DEEP"


class TooManyAliasesError(MailflowError):
    """An operation uses more aliases than allowed."""

    code = "TOO_MANY_ALIASES"


class TooManyDirectivesError(MailflowError):
    """An operation uses more directives than allowed."""

    code = "TOO_MANY_DIRECTIVES"


class QueryTooCostlyError(MailflowError):
    """An operation would cost more points than allowed."""

    code = "QUERY_TOO_COSTLY"


class OperationNameRequiredError(MailflowError):
    """A document holds several operations and the request did not say which to run."""

    code = "OPERATION_NAME_REQUIRED"


@dataclass(frozen=True, slots=True)
class Measure:
    """What an operation, or a part of one, asks for."""

    depth: int = 0
    aliases: int = 0
    directives: int = 0
    cost: int = 0

    def beside(self, other: Measure) -> Measure:
        """The measure of two selections of one selection set."""
        return Measure(
            depth=max(self.depth, other.depth),
            aliases=self.aliases + other.aliases,
            directives=self.directives + other.directives,
            cost=self.cost + other.cost,
        )


class QueryLimits(ValidationCache):
    """Parse within the token limit, refuse what is over a limit, then validate (cached).

    It takes the place of strawberry's ParserCache and ValidationCache. The limits are the
    request's settings; without a request (the schema introspecting itself), the process's.
    """

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        assert context.query is not None
        document = parse_within(context.query, self._settings().max_query_tokens)
        # The name the request gave; strawberry's operation_name falls back to the first one.
        require_operation_name(document, context._provided_operation_name)
        context.graphql_document = document
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        assert context.graphql_document is not None
        errors = [
            GraphQLError(error.message, original_error=error)
            for error in limit_errors(
                context.graphql_document, context.schema._schema, context.variables or {},
                self._settings(),
            )
        ]
        if errors:
            context.pre_execution_errors = errors
            yield
        else:
            yield from super().on_validate()

    def _settings(self) -> Settings:
        context = self.execution_context.context
        return context.settings if isinstance(context, RequestContext) else get_settings()


def parse_within(query: str, max_tokens: int) -> DocumentNode:
    """``query`` parsed, or TooManyTokensError as soon as it passes ``max_tokens`` tokens."""
    try:
        return _parse(query, max_tokens)
    except GraphQLSyntaxError:
        # Counting stops at twice the limit, so a refusal costs at most two parses' lexing.
        counted = 2 * max_tokens
        tokens = count_tokens(query, stop_after=counted)
        if tokens > max_tokens:
            has = f"more than {counted}" if tokens > counted else str(tokens)
            raise TooManyTokensError(
                f"the query has {has} tokens; the limit is {max_tokens} "
                "(MAILFLOW_MAX_QUERY_TOKENS)"
            ) from None
        raise


@lru_cache(maxsize=128)
def _parse(query: str, max_tokens: int) -> DocumentNode:
    return parse(query, max_tokens=max_tokens)


def count_tokens(query: str, *, stop_after: int) -> int:
    """The tokens graphql-core's parser counts in ``query``, up to its first lexical error.

    Counting stops at ``stop_after`` + 1.
    """
    lexer = Lexer(Source(query))
    tokens = 0
    try:
        while tokens <= stop_after and lexer.advance().kind is not TokenKind.EOF:
            tokens += 1
    except GraphQLSyntaxError:
        pass
    return tokens


def require_operation_name(document: DocumentNode, operation_name: str | None) -> None:
    """Raise when ``document`` has several operations and ``operation_name`` picks none."""
    operations = _operations(document)
    if operation_name is None and len(operations) > 1:
        names = ", ".join(
            operation.name.value if operation.name else "(anonymous)" for operation in operations
        )
        raise OperationNameRequiredError(
            f"the document holds {len(operations)} operations ({names}); say which one to "
            'run with "operationName"'
        )


def limit_errors(
    document: DocumentNode,
    schema: GraphQLSchema,
    variables: Mapping[str, Any],
    settings: Settings,
) -> list[MailflowError]:
    """One error per limit that an operation of ``document`` goes over."""
    fragments = {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
    errors: list[MailflowError] = []
    for operation in _operations(document):
        measure = _Measurer(schema, fragments, operation, variables, settings).operation()
        errors += _over_limits(measure, _subject(operation), settings)
        if errors:
            break
    return errors


def _over_limits(measure: Measure, subject: str, settings: Settings) -> list[MailflowError]:
    errors: list[MailflowError] = []
    if measure.depth > settings.max_query_depth:
        errors.append(QueryTooDeepError(
            f"{subject} nests fields {measure.depth} deep; the limit is "
            f"{settings.max_query_depth} (MAILFLOW_MAX_QUERY_DEPTH)"
        ))
    if measure.aliases > settings.max_query_aliases:
        errors.append(TooManyAliasesError(
            f"{subject} uses {measure.aliases} aliases, counting each fragment spread; the "
            f"limit is {settings.max_query_aliases} (MAILFLOW_MAX_QUERY_ALIASES)"
        ))
    if measure.directives > settings.max_query_directives:
        errors.append(TooManyDirectivesError(
            f"{subject} uses {measure.directives} directives, counting each fragment spread; "
            f"the limit is {settings.max_query_directives} (MAILFLOW_MAX_QUERY_DIRECTIVES)"
        ))
    if measure.cost > settings.max_query_cost:
        errors.append(QueryTooCostlyError(
            f"{subject} costs {measure.cost} points; the limit is {settings.max_query_cost} "
            "(MAILFLOW_MAX_QUERY_COST). A report field costs a point per day of its range, "
            f"other fields a point, and fields under connectors count {ASSUMED_CONNECTORS} "
            "times: ask for fewer fields or shorter ranges"
        ))
    return errors


class _Unread(Enum):
    VALUE = "unread"


UNREAD = _Unread.VALUE


class _Measurer:
    """Measures one operation; each fragment is measured once, then reused at every spread."""

    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: Mapping[str, FragmentDefinitionNode],
        operation: OperationDefinitionNode,
        variables: Mapping[str, Any],
        settings: Settings,
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.operation_node = operation
        self.variables = variables
        self.defaults = {
            definition.variable.name.value: definition.default_value
            for definition in operation.variable_definitions or ()
        }
        self.max_days = settings.max_range_days
        self.measured: dict[str, Measure] = {}
        self.entered: set[str] = set()

    def operation(self) -> Measure:
        root = self.schema.get_root_type(OperationType(self.operation_node.operation.value))
        own = Measure(directives=len(self.operation_node.directives or ()))
        return own.beside(self.selection_set(self.operation_node.selection_set, root))

    def selection_set(
        self, node: SelectionSetNode | None, parent: GraphQLNamedType | None
    ) -> Measure:
        total = Measure()
        for selection in node.selections if node else ():
            if isinstance(selection, FieldNode):
                measure = self.field(selection, parent)
            elif isinstance(selection, InlineFragmentNode):
                measure = self.selection_set(
                    selection.selection_set, self.condition(selection.type_condition, parent)
                )
            else:
                assert isinstance(selection, FragmentSpreadNode)
                measure = self.fragment(selection.name.value)
            own = Measure(directives=len(selection.directives or ()))
            total = total.beside(measure).beside(own)
        return total

    def field(self, node: FieldNode, parent: GraphQLNamedType | None) -> Measure:
        parent_name = parent.name if parent else ""
        key = (parent_name, node.name.value)
        inner = self.selection_set(node.selection_set, self.field_type(parent, node.name.value))
        own_cost = self.range_days(node) if key in REPORT_FIELDS else 1
        return Measure(
            depth=1 + inner.depth,
            aliases=inner.aliases + (node.alias is not None),
            directives=inner.directives,
            cost=own_cost + LIST_WEIGHTS.get(key, 1) * inner.cost,
        )

    def fragment(self, name: str) -> Measure:
        if name in self.measured:
            return self.measured[name]
        definition = self.fragments.get(name)
        if definition is None or name in self.entered:
            return Measure()  # unknown or cyclic: validation refuses the document anyway
        self.entered.add(name)
        measure = self.selection_set(
            definition.selection_set, self.condition(definition.type_condition, None)
        ).beside(Measure(directives=len(definition.directives or ())))
        self.measured[name] = measure
        return measure

    def condition(
        self, condition: NamedTypeNode | None, parent: GraphQLNamedType | None
    ) -> GraphQLNamedType | None:
        return self.schema.get_type(condition.name.value) if condition else parent

    def field_type(self, parent: GraphQLNamedType | None, name: str) -> GraphQLNamedType | None:
        if not isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            return None
        definition = parent.fields.get(name)
        return get_named_type(definition.type) if definition else None

    def range_days(self, node: FieldNode) -> int:
        """Days of the field's range, defaults filled in as the resolvers fill them in."""
        start, end = self.date_argument(node, "start"), self.date_argument(node, "end")
        if start is UNREAD or end is UNREAD:
            return self.max_days
        if start is None or end is None:
            return min(DEFAULT_DAYS, self.max_days)
        return min(max((end - start).days + 1, 1), self.max_days)

    def date_argument(self, node: FieldNode, name: str) -> datetime.date | _Unread | None:
        value: ValueNode | None = next(
            (argument.value for argument in node.arguments or () if argument.name.value == name),
            None,
        )
        if isinstance(value, VariableNode):
            variable = value.name.value
            if variable in self.variables:
                return _date_or_unread(self.variables[variable])
            value = self.defaults.get(variable)
        if value is None or isinstance(value, NullValueNode):
            return None
        if isinstance(value, StringValueNode):
            return _date_or_unread(value.value)
        return UNREAD


def _date_or_unread(value: object) -> datetime.date | _Unread | None:
    if value is None:
        return None
    try:
        return parse_date(value)
    except GraphQLError:
        return UNREAD


def _operations(document: DocumentNode) -> list[OperationDefinitionNode]:
    return [
        definition
        for definition in document.definitions
        if isinstance(definition, OperationDefinitionNode)
    ]


def _subject(operation: OperationDefinitionNode) -> str:
    return f"operation {operation.name.value}" if operation.name else "the query"
