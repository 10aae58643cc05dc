"""CSV exports of the connector report, as a Microsoft 365 admin knows its columns.

GET /export/connector-report.csv counts messages per TLS version, GET /export/tls-usage.csv
gives their percent of the row's volume; both have one row per UTC day, direction and
connector with mail, and take the filters of the GraphQL reports as query parameters, checked
the same way. A file is streamed from the daily rollups as PostgreSQL returns them.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

import asyncpg
from graphql import GraphQLError
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from mailflow.api.auth import (
    ForbiddenError,
    UnauthenticatedError,
    forbidden_response,
    reader_of,
    unauthenticated_response,
)
from mailflow.api.errors import (
    BAD_USER_INPUT,
    INTERNAL_MESSAGE,
    INTERNAL_SERVER_ERROR,
    error_body,
    log_unavailable,
    unavailable_response,
)
from mailflow.api.ids import CONNECTOR, decode_global_id, shown_id
from mailflow.api.scalars import parse_date
from mailflow.domain import Direction
from mailflow.errors import MailflowError
from mailflow.reports.errors import ConflictingFiltersError, ConnectorNotFoundError
from mailflow.reports.export import ConnectorDay, connector_days
from mailflow.reports.percentages import one_decimal_percents
from mailflow.reports.queries import FlowFilter
from mailflow.reports.ranges import DateRange, resolve_range, utc_today
from mailflow.settings import Settings
from mailflow.store.availability import is_database_unavailable, pooled
from mailflow.store.connection import Connection
from mailflow.store.isolation import (
    enter_organization,
    organization_transaction,
    service_transaction,
)
from mailflow.store.organizations import load_connectors

log = logging.getLogger("mailflow.api")

PARAMETERS = ("start", "end", "direction", "connectorId", "noConnector")
KEYS = ("Date", "Direction", "Connector", "Connector type", "Forced TLS")
TLS_COLUMNS = ("No TLS", "TLS 1.0", "TLS 1.1", "TLS 1.2", "TLS 1.3", "Unknown TLS")
CHUNK_CHARACTERS = 64 * 1024
# A spreadsheet takes a cell that starts so for a formula; such text is written behind a quote.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class BadExportArgumentError(MailflowError):
    """A query parameter of an export that does not fit its type."""

    code = BAD_USER_INPUT


@dataclass(frozen=True, slots=True)
class CsvReport:
    """One export: its file name and how a connector day becomes its TLS cells."""

    name: str
    tls_header: tuple[str, ...]
    tls_cells: Callable[[ConnectorDay], Sequence[str]]

    @property
    def header(self) -> list[str]:
        return [*KEYS, *self.tls_header, "Volume"]

    def row(self, connector_day: ConnectorDay) -> list[str]:
        return [*_key_cells(connector_day), *self.tls_cells(connector_day),
                str(connector_day.messages)]


def _message_counts(connector_day: ConnectorDay) -> list[str]:
    return [str(count) for _, count in connector_day.messages_by_tls]


def _percents(connector_day: ConnectorDay) -> list[str]:
    counts = [count for _, count in connector_day.messages_by_tls]
    return [f"{percent:.1f}" for percent in one_decimal_percents(counts) if percent is not None]


CONNECTOR_REPORT = CsvReport("connector-report", TLS_COLUMNS, _message_counts)
TLS_USAGE = CsvReport("tls-usage", tuple(f"{column} %" for column in TLS_COLUMNS), _percents)


@dataclass(frozen=True, slots=True)
class ExportArguments:
    """The filters of an export, as given; the range's defaults are not filled in yet."""

    start: date | None = None
    end: date | None = None
    direction: Direction | None = None
    connector_id: str | None = None
    no_connector: bool = False


class ExportEndpoint:
    """Serves the CSV exports to a token that reads reports (the demo organization without)."""

    def __init__(
        self, pool: asyncpg.Pool, settings: Settings, demo_organization_id: int | None
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.demo_organization_id = demo_organization_id

    async def connector_report(self, request: Request) -> Response:
        """GET /export/connector-report.csv: messages per TLS version."""
        return await self._export(request, CONNECTOR_REPORT)

    async def tls_usage(self, request: Request) -> Response:
        """GET /export/tls-usage.csv: each TLS version's percent of the row's volume."""
        return await self._export(request, TLS_USAGE)

    async def _export(self, request: Request, report: CsvReport) -> Response:
        request_id: str = request.state.request_id
        try:
            organization_id, window, flow_filter = await self._selection(request)
        except UnauthenticatedError as error:
            return unauthenticated_response(error)
        except ForbiddenError as error:
            return forbidden_response(error)
        except MailflowError as error:
            if is_database_unavailable(error):
                return _unavailable(error, request_id)
            return JSONResponse(error_body(str(error), error.code), status_code=400)
        except Exception as error:
            if is_database_unavailable(error):
                return _unavailable(error, request_id)
            log.exception("export request %s failed", request_id,
                          extra={"request_id": request_id})
            return JSONResponse(
                error_body(INTERNAL_MESSAGE, INTERNAL_SERVER_ERROR, requestId=request_id),
                status_code=500,
            )

        file_name = f"{report.name}_{window.start}_{window.end}.csv"
        return StreamingResponse(
            self._csv(report, organization_id, window, flow_filter, request_id),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{file_name}"'},
        )

    async def _selection(self, request: Request) -> tuple[int, DateRange, FlowFilter]:
        """Whose mail the request exports, over which days, kept by which filter; raises
        for a caller without a reader's token and for a bad parameter."""
        async with pooled(self.pool) as connection, service_transaction(connection):
            grant = await reader_of(
                request, connection, demo_organization_id=self.demo_organization_id
            )
            await enter_organization(connection, grant.organization_id)
            arguments = export_arguments(request.query_params)
            window = resolve_range(arguments.start, arguments.end, today=utc_today(),
                                   max_days=self.settings.max_range_days)
            flow_filter = await _flow_filter(connection, grant.organization_id, arguments)
        return grant.organization_id, window, flow_filter

    async def _csv(
        self,
        report: CsvReport,
        organization_id: int,
        window: DateRange,
        flow_filter: FlowFilter,
        request_id: str,
    ) -> AsyncIterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(report.header)
        try:
            async with (
                pooled(self.pool) as connection,
                organization_transaction(connection, organization_id),
            ):
                async for connector_day in connector_days(
                    connection, organization_id, window, flow_filter
                ):
                    writer.writerow(report.row(connector_day))
                    if buffer.tell() >= CHUNK_CHARACTERS:
                        yield _taken(buffer)
        except Exception as error:
            # The status line is sent: breaking the connection is how the client learns the
            # file is incomplete.
            log.warning("export request %s broke off after its first rows (%s); the client "
                        "got an incomplete file", request_id, type(error).__name__,
                        extra={"request_id": request_id})
            raise
        yield _taken(buffer)


def export_arguments(parameters: QueryParams) -> ExportArguments:
    """The filters in an export's query string; BadExportArgumentError for a bad one."""
    unknown = sorted(set(parameters) - set(PARAMETERS))
    if unknown:
        raise BadExportArgumentError(
            f"unknown query parameter {unknown[0][:40]!r}; an export takes "
            f"{', '.join(PARAMETERS)}"
        )
    values = _single_values(parameters)
    return ExportArguments(
        start=_date("start", values.get("start")),
        end=_date("end", values.get("end")),
        direction=_direction(values.get("direction")),
        connector_id=values.get("connectorId"),
        no_connector=_boolean("noConnector", values.get("noConnector")),
    )


def _single_values(parameters: QueryParams) -> Mapping[str, str]:
    for name in PARAMETERS:
        if len(parameters.getlist(name)) > 1:
            raise BadExportArgumentError(f"the query parameter {name} is given more than once; "
                                         "give it once")
    return {name: parameters[name] for name in PARAMETERS if name in parameters}


def _date(name: str, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return parse_date(value)
    except GraphQLError as error:
        raise BadExportArgumentError(f"{name}: {error.message}") from None


def _direction(value: str | None) -> Direction | None:
    if value is None:
        return None
    try:
        return Direction(value)
    except ValueError:
        raise BadExportArgumentError(
            f"direction: {value[:40]!r} is not a direction; pass INBOUND or OUTBOUND"
        ) from None


def _boolean(name: str, value: str | None) -> bool:
    if value is None or value == "false":
        return False
    if value == "true":
        return True
    raise BadExportArgumentError(f"{name}: {value[:40]!r} is not a Boolean; pass true or false")


async def _flow_filter(
    connection: Connection, organization_id: int, arguments: ExportArguments
) -> FlowFilter:
    """The report filter of ``arguments``, as the GraphQL reports check theirs."""
    if arguments.connector_id is not None and arguments.no_connector:
        raise ConflictingFiltersError(
            "connectorId and noConnector: true exclude each other: mail that matched no "
            "connector has no connector id; pass one of them"
        )
    if arguments.connector_id is None:
        return FlowFilter(direction=arguments.direction, no_connector=arguments.no_connector)

    connector_id = decode_global_id(CONNECTOR, arguments.connector_id)
    connectors = await load_connectors(connection, organization_id)
    if not any(connector.id == connector_id for connector in connectors):
        raise ConnectorNotFoundError(
            f"the organization has no connector with id {shown_id(arguments.connector_id)}; "
            "list its connectors with the connectors field"
        )
    return FlowFilter(direction=arguments.direction, connector_id=connector_id)


def _key_cells(connector_day: ConnectorDay) -> list[str]:
    kind = connector_day.connector_kind
    forced = connector_day.require_tls
    return [
        connector_day.day.isoformat(),
        connector_day.direction.value,
        _cell(connector_day.connector_name or ""),
        "" if kind is None else kind.value,
        "" if forced is None else str(forced).lower(),
    ]


def _cell(text: str) -> str:
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _taken(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def _unavailable(error: Exception, request_id: str) -> Response:
    log_unavailable(request_id, f"{type(error).__name__}: {error}")
    return unavailable_response(request_id)
