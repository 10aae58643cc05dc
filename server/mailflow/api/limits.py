"""How much one GraphQL document may ask of the server, checked before anything runs.

Tokens are counted while parsing, so an oversized document is never parsed in full. Depth,
aliases, alias lengths, directives and cost are measured on the parsed operation with every
fragment spread expanded (a fragment spread three times counts three times), before
graphql-core validates the document: a document over a limit reaches neither validation, the
resolvers nor the database.

Cost is counted in points, about one per value the answer would hold. A field costs one
point; a field that returns a list costs one point per item it is assumed to return; a report
field (``mailFlow``, ``tlsBreakdown``, ``insights``, ``tlsSessions``, ``tlsFailures`` and a
connector's ``volume``, ``tlsBreakdown``, ``insights``) costs one point per day of its range
instead. Everything selected under a list counts once per assumed item, compounding with
nesting. Whether a field returns a list is read from the schema; how many items it is assumed
to return is in ``LIST_SIZES`` (``DAYS``: one per day of the range of the field, or of the
report field it is nested in; ``PAGE``: the ``first`` argument of the connection field it is
nested in, its default when not given; ``IDS``: one per id the field is given), for
introspection it is the schema's own counts, and ``DEFAULT_LIST_SIZE`` for any other list.
A range the server cannot read before running the query counts as the longest range, a page
size it cannot read as the largest page.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLEnumType,
    GraphQLError,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    GraphQLSyntaxError,
    GraphQLUnionType,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
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
from graphql.type.introspection import SchemaMetaFieldDef, TypeMetaFieldDef
from strawberry.extensions import ValidationCache

from mailflow.api.context import RequestContext, SubscriptionContext
from mailflow.api.pages import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from mailflow.api.scalars import parse_date
from mailflow.domain import TlsVersion
from mailflow.errors import MailflowError
from mailflow.reports.insights import InsightKind
from mailflow.reports.ranges import DEFAULT_DAYS
from mailflow.settings import Settings, get_settings


class _Days(Enum):
    VALUE = "days"


DAYS = _Days.VALUE
"""The size of a list with one item per day of the field's range."""


class _Page(Enum):
    VALUE = "page"


PAGE = _Page.VALUE
"""The size of a connection's edges: the ``first`` argument of the connection field."""


class _Ids(Enum):
    VALUE = "ids"


IDS = _Ids.VALUE
"""The size of a list with one item per id in the field's ``ids`` argument."""

MAX_PAGE = MAX_PAGE_SIZE
"""The largest page a connection hands out, which a ``first`` unread before running costs."""
DEFAULT_PAGE = DEFAULT_PAGE_SIZE
"""The page size of a connection field given no ``first``."""

ASSUMED_CONNECTORS = 10
"""How many connectors an organization is assumed to have: not known before the query runs."""
ASSUMED_POLICY_DOMAINS = 10
"""How many policy domains an organization's TLS reports are assumed to be about."""
ASSUMED_RESULT_TYPES = 3
"""How many failure result types a policy domain's day is assumed to hold (RFC 8460 has 11)."""
DEFAULT_LIST_SIZE = 10
"""The assumed size of a list that neither LIST_SIZES nor the schema says more about."""

REPORT_FIELDS = frozenset({
    ("Query", "mailFlow"),
    ("Query", "tlsBreakdown"),
    ("Query", "insights"),
    ("Connector", "volume"),
    ("Query", "mailFlowSeries"),
    ("Connector", "volumeSeries"),
    ("Connector", "tlsBreakdown"),
    ("Connector", "insights"),
    ("Query", "tlsSessions"),
    ("Query", "tlsFailures"),
    ("Subscription", "mailFlowUpdates"),
    ("Subscription", "insightsUpdates"),
    ("Query", "allTlsFailures"),
})
CONNECTION_FIELDS = frozenset({
    ("Query", "allConnectors"),
    ("Query", "allTlsFailures"),
})
LIST_SIZES: Mapping[tuple[str, str], int | _Days | _Page | _Ids] = {
    ("ConnectorConnection", "edges"): PAGE,
    ("TlsFailureConnection", "edges"): PAGE,
    ("Query", "nodes"): IDS,
    ("Query", "connectors"): ASSUMED_CONNECTORS,
    # At most one insight of each kind per connector.
    ("Query", "insights"): ASSUMED_CONNECTORS * len(InsightKind),
    ("Connector", "insights"): len(InsightKind),
    ("Query", "mailFlow"): DAYS,
    ("Connector", "volume"): DAYS,
    ("MailFlowPoint", "byTls"): len(TlsVersion),
    ("MailFlowSeries", "dates"): DAYS,
    ("MailFlowSeries", "messages"): DAYS,
    ("MailFlowSeries", "recipients"): DAYS,
    ("MailFlowSeries", "bytes"): DAYS,
    ("MailFlowSeries", "byTls"): len(TlsVersion),
    ("TlsSeries", "messages"): DAYS,
    ("TlsBreakdown", "versions"): len(TlsVersion),
    ("Query", "tlsSessions"): ASSUMED_POLICY_DOMAINS,
    ("TlsPolicyDomainSessions", "days"): DAYS,
    ("TlsSessionsPoint", "failedSessionsByResultType"): ASSUMED_RESULT_TYPES,
    # Assumed one failure detail per day: a reporter may send more than the points say.
    ("Query", "tlsFailures"): DAYS,
    # An update of a subscription is measured as one answer.
    ("MailFlowUpdate", "points"): DAYS,
    ("InsightsUpdate", "insights"): ASSUMED_CONNECTORS * len(InsightKind),
}
INTROSPECTION_FIELDS = {"__schema": SchemaMetaFieldDef, "__type": TypeMetaFieldDef}


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


class AliasTooLongError(MailflowError):
    """An operation uses an alias longer than allowed; each one is repeated in the answer."""

    code = "ALIAS_TOO_LONG"


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
    longest_alias: int = 0

    def beside(self, other: Measure) -> Measure:
        """The measure of two selections of one selection set."""
        return Measure(
            depth=max(self.depth, other.depth),
            aliases=self.aliases + other.aliases,
            directives=self.directives + other.directives,
            cost=self.cost + other.cost,
            longest_alias=max(self.longest_alias, other.longest_alias),
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
        if isinstance(context, RequestContext | SubscriptionContext):
            return context.settings
        return get_settings()


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
    fragments = _fragments(document)
    errors: list[MailflowError] = []
    for operation in _operations(document):
        measured = _Measurer(schema, fragments, operation, variables, settings).operation()
        errors += _over_limits(measured, _subject(operation), settings)
        if errors:
            break
    return errors


def measure(
    document: DocumentNode,
    schema: GraphQLSchema,
    variables: Mapping[str, Any],
    settings: Settings,
) -> list[Measure]:
    """The measure of each operation of ``document``, as the limits see it."""
    fragments = _fragments(document)
    return [
        _Measurer(schema, fragments, operation, variables, settings).operation()
        for operation in _operations(document)
    ]


def _fragments(document: DocumentNode) -> dict[str, FragmentDefinitionNode]:
    return {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }


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
    if measure.longest_alias > settings.max_alias_length:
        errors.append(AliasTooLongError(
            f"{subject} has an alias of {measure.longest_alias} characters; the limit is "
            f"{settings.max_alias_length} (MAILFLOW_MAX_ALIAS_LENGTH)"
        ))
    if measure.cost > settings.max_query_cost:
        errors.append(QueryTooCostlyError(
            f"{subject} costs {measure.cost} points; the limit is {settings.max_query_cost} "
            "(MAILFLOW_MAX_QUERY_COST). A field costs a point, a list a point per item, a "
            "report field a point per day of its range, and what is selected under a list "
            f"counts once per item: {ASSUMED_CONNECTORS} connectors, "
            f"{len(InsightKind)} insights per connector, a day of mailFlow or volume per day, "
            f"{ASSUMED_POLICY_DOMAINS} policy domains of tlsSessions, "
            f"{len(TlsVersion)} TLS versions, {DEFAULT_LIST_SIZE} items of other lists. Ask "
            "for fewer fields, shorter ranges or less nesting"
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
        self.measured: dict[tuple[str, int | None], Measure] = {}
        self.report_days: list[int] = []  # the ranges of the report fields being measured
        self.page_sizes: list[int] = []  # the pages of the connection fields being measured
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
        field_type = self.field_type(parent, node.name.value)
        days = self.range_days(node) if key in REPORT_FIELDS else None
        page = self.page_size(node) if key in CONNECTION_FIELDS else None
        if days is not None:
            self.report_days.append(days)
        if page is not None:
            self.page_sizes.append(page)
        try:
            inner = self.selection_set(node.selection_set, get_named_type(field_type))
        finally:
            if days is not None:
                self.report_days.pop()
            if page is not None:
                self.page_sizes.pop()
        items = self.list_size(key, field_type, days, node)
        # A report field costs its days; a list its items; any other field a point.
        own_cost = days if days is not None else max(items or 1, 1)
        return Measure(
            depth=1 + inner.depth,
            aliases=inner.aliases + (node.alias is not None),
            directives=inner.directives,
            cost=own_cost + (1 if items is None else items) * inner.cost,
            longest_alias=max(inner.longest_alias, len(node.alias.value) if node.alias else 0),
        )

    def list_size(
        self,
        key: tuple[str, str],
        field_type: GraphQLOutputType | None,
        days: int | None,
        node: FieldNode,
    ) -> int | None:
        """How many items the field is assumed to return; None when it returns no list."""
        while isinstance(field_type, GraphQLNonNull):
            field_type = field_type.of_type
        if not isinstance(field_type, GraphQLList):
            return None
        size = LIST_SIZES.get(key, _introspection_sizes(self.schema).get(key))
        if size is DAYS:
            if days is not None:
                return days
            return self.report_days[-1] if self.report_days else self.max_days
        if size is PAGE:
            return self.page_sizes[-1] if self.page_sizes else MAX_PAGE
        if size is IDS:
            return self.ids_count(node)
        return DEFAULT_LIST_SIZE if size is None else size

    def page_size(self, node: FieldNode) -> int:
        """The field's ``first``, within 1 and MAX_PAGE; MAX_PAGE when it cannot be read."""
        value = self.argument_value(node, "first")
        if value is None:
            return DEFAULT_PAGE
        if isinstance(value, IntValueNode):
            value = int(value.value)
        if isinstance(value, int) and not isinstance(value, bool):
            return min(max(value, 1), MAX_PAGE)
        return MAX_PAGE

    def ids_count(self, node: FieldNode) -> int:
        """How many ids the field's ``ids`` holds; MAX_PAGE when it cannot be read."""
        value = self.argument_value(node, "ids")
        if isinstance(value, ListValueNode):
            return len(value.values)
        if isinstance(value, list):
            return len(value)
        return 1 if isinstance(value, StringValueNode | str) else MAX_PAGE

    def argument_value(self, node: FieldNode, name: str) -> object:
        """The argument's node, or the value of the variable it names; None when absent."""
        value: ValueNode | None = next(
            (argument.value for argument in node.arguments or () if argument.name.value == name),
            None,
        )
        if isinstance(value, VariableNode):
            variable = value.name.value
            if variable in self.variables:
                return self.variables[variable]
            value = self.defaults.get(variable)
        return None if isinstance(value, NullValueNode) else value

    def fragment(self, name: str) -> Measure:
        # A fragment's lists of days are as long as the range of the report field around it.
        key = (name, self.report_days[-1] if self.report_days else None)
        if key in self.measured:
            return self.measured[key]
        definition = self.fragments.get(name)
        if definition is None or name in self.entered:
            return Measure()  # unknown or cyclic: validation refuses the document anyway
        self.entered.add(name)
        try:
            measure = self.selection_set(
                definition.selection_set, self.condition(definition.type_condition, None)
            ).beside(Measure(directives=len(definition.directives or ())))
        finally:
            self.entered.discard(name)
        self.measured[key] = measure
        return measure

    def condition(
        self, condition: NamedTypeNode | None, parent: GraphQLNamedType | None
    ) -> GraphQLNamedType | None:
        return self.schema.get_type(condition.name.value) if condition else parent

    def field_type(self, parent: GraphQLNamedType | None, name: str) -> GraphQLOutputType | None:
        if not isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            return None
        if name in INTROSPECTION_FIELDS and parent is self.schema.query_type:
            return INTROSPECTION_FIELDS[name].type
        definition = parent.fields.get(name)
        return definition.type if definition else None

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


@lru_cache(maxsize=4)
def _introspection_sizes(schema: GraphQLSchema) -> Mapping[tuple[str, str], int]:
    """The introspection lists sized by ``schema``'s own counts.

    ``types`` and ``directives`` are as long as the schema has types and directives; a
    type's ``fields``, ``enumValues``, ``inputFields``, ``interfaces`` and ``possibleTypes``
    by their average over all types (null counts as none), so that ``types { fields }``
    costs what the schema holds; ``args`` and ``locations`` by their average too.
    """
    types = list(schema.type_map.values())
    directives = list(schema.directives)
    fields = [
        field
        for named in types
        if isinstance(named, GraphQLObjectType | GraphQLInterfaceType)
        for field in named.fields.values()
    ]

    def per_type(count: Callable[[GraphQLNamedType], int]) -> int:
        return _average(sum(count(named) for named in types), len(types))

    return {
        ("__Schema", "types"): len(types),
        ("__Schema", "directives"): len(directives),
        ("__Type", "fields"): per_type(
            lambda t: len(t.fields) if isinstance(t, GraphQLObjectType | GraphQLInterfaceType)
            else 0
        ),
        ("__Type", "interfaces"): per_type(
            lambda t: len(t.interfaces)
            if isinstance(t, GraphQLObjectType | GraphQLInterfaceType) else 0
        ),
        ("__Type", "possibleTypes"): per_type(
            lambda t: len(schema.get_possible_types(t))
            if isinstance(t, GraphQLInterfaceType | GraphQLUnionType) else 0
        ),
        ("__Type", "enumValues"): per_type(
            lambda t: len(t.values) if isinstance(t, GraphQLEnumType) else 0
        ),
        ("__Type", "inputFields"): per_type(
            lambda t: len(t.fields) if isinstance(t, GraphQLInputObjectType) else 0
        ),
        ("__Field", "args"): _average(sum(len(field.args) for field in fields), len(fields)),
        ("__Directive", "args"): _average(
            sum(len(directive.args) for directive in directives), len(directives)
        ),
        ("__Directive", "locations"): _average(
            sum(len(directive.locations) for directive in directives), len(directives)
        ),
    }


def _average(total: int, count: int) -> int:
    """``total / count`` rounded up; 0 for none."""
    return -(-total // count) if count else 0


def _operations(document: DocumentNode) -> list[OperationDefinitionNode]:
    return [
        definition
        for definition in document.definitions
        if isinstance(definition, OperationDefinitionNode)
    ]


def _subject(operation: OperationDefinitionNode) -> str:
    return f"operation {operation.name.value}" if operation.name else "the query"
