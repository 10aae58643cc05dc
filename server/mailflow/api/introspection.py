"""Introspection, on unless the settings switch it off (MAILFLOW_INTROSPECTION=false).

Switched off, ``__schema`` and ``__type`` fail validation with INTROSPECTION_DISABLED;
``__typename`` still answers. This is strawberry's DisableIntrospection (a validation rule
added per operation) decided per request from its settings, with graphql-core's rule
reporting one coded error per introspection field rather than one per field beneath it.
The added rule is part of the validation cache's key, so cached results of one setting
never answer the other.
"""

from __future__ import annotations

from collections.abc import Iterator

from graphql import GraphQLError
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import AddValidationRules

from mailflow.api.context import RequestContext, SubscriptionContext
from mailflow.errors import MailflowError
from mailflow.settings import Settings, get_settings

INTROSPECTION_FIELDS = frozenset({"__schema", "__type"})


class IntrospectionDisabledError(MailflowError):
    """The query introspects the schema, which this server does not answer."""

    code = "INTROSPECTION_DISABLED"


class NoIntrospection(NoSchemaIntrospectionCustomRule):
    """graphql-core's rule, its errors coded and only where introspection begins."""

    def report_error(self, error: GraphQLError) -> None:
        node = error.nodes[0] if error.nodes else None
        name = getattr(getattr(node, "name", None), "value", None)
        if name not in INTROSPECTION_FIELDS:
            return  # a field under __schema or __type, already refused there
        message = (
            f"introspection is switched off on this server (MAILFLOW_INTROSPECTION), and the "
            f"query asks for '{name}'; mailflow's schema is published as SDL in its schema/ "
            "directory"
        )
        super().report_error(GraphQLError(
            message, error.nodes, original_error=IntrospectionDisabledError(message)
        ))


class Introspection(AddValidationRules):
    """Adds NoIntrospection to the validation rules of requests whose settings say so."""

    def __init__(self) -> None:
        super().__init__([NoIntrospection])

    def on_operation(self) -> Iterator[None]:
        if self._settings().introspection:
            yield
        else:
            yield from super().on_operation()

    def _settings(self) -> Settings:
        context = self.execution_context.context
        if isinstance(context, RequestContext | SubscriptionContext):
            return context.settings
        return get_settings()
