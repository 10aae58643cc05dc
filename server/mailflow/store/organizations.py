"""Organizations, their accepted domains, internal networks and connectors.

An organization file (YAML) declares all of them; ``load_organization_file``
validates it and ``apply_organization`` makes the database match it. The functions
that change one connector, accepted domain or internal network at a time (the API's
mutations) validate values with the same rules and messages as the file.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Self, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StrictBool,
    StrictStr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from mailflow.domain import Connector, ConnectorKind, Direction
from mailflow.errors import InvalidOrganizationNameError, MailflowError, OrganizationFileError
from mailflow.rollups.refresh import refresh_rollups
from mailflow.store.connection import Connection
from mailflow.store.isolation import enter_organization
from mailflow.store.sql import query

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

ORGANIZATION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
ORGANIZATION_NAME_RULE = (
    "use 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit"
)
LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
DOMAIN = re.compile(rf"^(?:\*\.)?(?:{LABEL}\.)*{LABEL}$")
HOST_NAME = re.compile(rf"^(?:{LABEL}\.)*{LABEL}$")

INBOUND_ONLY: tuple[str, ...] = ("sender_domains", "client_ips", "tls_cert_names")
OUTBOUND_ONLY: tuple[str, ...] = ("recipient_domains", "smart_hosts")
EITHER_DIRECTION: tuple[str, ...] = ("routes",)
MAX_ROUTE_NAME = 200
# Every report can be asked for all of an organization's connectors at once, and the query cost
# limit cannot know their number before a query runs: this bounds the work one request can ask.
MAX_CONNECTORS = 100

Spelling = Callable[[str], str]
"""How a caller spells the organization file's keys in messages (the API: camelCase)."""


class OrganizationValueError(MailflowError):
    """A value given for a connector, accepted domain or internal network breaks its rule."""

    code = "BAD_USER_INPUT"


class TooManyConnectorsError(MailflowError):
    """A new connector would make more than MAX_CONNECTORS."""

    code = "TOO_MANY_CONNECTORS"


class ConnectorNameTakenError(MailflowError):
    """Another connector of the organization has the name (compared without regard to case)."""

    code = "CONNECTOR_NAME_TAKEN"


class AcceptedDomainNotFoundError(MailflowError):
    """A domain to remove is not one of the organization's accepted domains."""

    code = "ACCEPTED_DOMAIN_NOT_FOUND"


class InternalNetworkNotFoundError(MailflowError):
    """A range to remove is not one of the organization's declared internal networks."""

    code = "INTERNAL_NETWORK_NOT_FOUND"


# The organization file.


def normalize_domain(value: str) -> str:
    """A domain rule in lower case without a trailing dot; ``*.`` only as the first label."""
    domain = value.strip().lower().rstrip(".")
    if not domain.isascii():
        raise ValueError(
            f"{shown(value)} is not an ASCII domain; write internationalized domains "
            "in their xn-- form"
        )
    if len(domain) > 253 or DOMAIN.match(domain) is None:
        raise ValueError(
            f"{shown(value)} is not a domain; expected a name such as 'example.com', "
            "or '*.example.com' for its subdomains"
        )
    return domain


def normalize_network(value: str) -> Network:
    """A CIDR range; a single address becomes a /32 (or /128), IPv4-mapped IPv6 becomes IPv4."""
    try:
        return _unmapped(ipaddress.ip_network(value.strip()))
    except ValueError:
        pass
    try:
        network = ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ValueError(
            f"{shown(value)} is not an IP address or CIDR range; expected for example "
            "'192.0.2.0/24', '192.0.2.7' or '2001:db8::/32'"
        ) from None
    raise ValueError(f"{shown(value)} has host bits set; did you mean '{network}'?")


def _unmapped(network: Network) -> Network:
    """The IPv4 range of an IPv4-mapped IPv6 range, as addresses are compared; else itself."""
    mapped = ipaddress.IPv6Network("::ffff:0:0/96")
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(mapped):
        first = network.network_address.ipv4_mapped
        assert first is not None
        return ipaddress.ip_network(f"{first}/{network.prefixlen - 96}")
    return network


def _network_item(value: object) -> object:
    return normalize_network(value) if isinstance(value, str) else value


def check_internal_network(network: Network) -> Network:
    """``network`` unless it is a /0, which would leave no mail crossing the boundary."""
    if network.prefixlen == 0:
        raise ValueError(
            f"'{network}' would make every address internal, so no mail would cross "
            "the boundary; list the organization's own ranges instead"
        )
    return network


DomainRule = Annotated[StrictStr, AfterValidator(normalize_domain)]
NetworkRule = Annotated[Network, BeforeValidator(_network_item)]
InternalNetworkRule = Annotated[NetworkRule, AfterValidator(check_internal_network)]


def normalize_smart_host(value: str) -> str:
    """A smart host: a host name in lower case, or an IP address in its canonical form."""
    host = value.strip().lower().rstrip(".")
    try:
        return str(ipaddress.ip_address(host.removeprefix("[").removesuffix("]")))
    except ValueError:
        pass
    if len(host) > 253 or HOST_NAME.match(host) is None:
        raise ValueError(
            f"{shown(value)} is not a host name or IP address; expected for example "
            "'smtp.example.com' or '192.0.2.25' (no port, no wildcard)"
        )
    return host


class KeyedValueError(ValueError):
    """A check on a list or mapping whose problem lies in the key ``key`` below it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def _either(keys: Sequence[str]) -> str:
    return ", ".join(keys[:-1]) + " or " + keys[-1]


def _choice(value: object, accepted: Sequence[str]) -> str:
    """``value`` as one of ``accepted`` (upper case), compared case-insensitively."""
    if isinstance(value, str):
        candidate = value.strip().upper().replace("-", "_")
        if candidate in accepted:
            return candidate
    names = ", ".join(choice.lower() for choice in accepted)
    raise ValueError(f"{shown(value)} is not one of {names}")


SmartHost = Annotated[StrictStr, AfterValidator(normalize_smart_host)]


def normalize_route(value: str) -> str:
    """A route name (a router, transport or connector name of the mail server), trimmed."""
    route = value.strip()
    if not 1 <= len(route) <= MAX_ROUTE_NAME or not route.isprintable():
        raise ValueError(
            f"{shown(value)} is not a route name; expected the name the mail server gives a route, "
            f"such as an Exim router or transport ('remote_smtp') or an Exchange connector, "
            f"1 to {MAX_ROUTE_NAME} printable characters"
        )
    return route


RouteName = Annotated[StrictStr, AfterValidator(normalize_route)]
Value = TypeVar("Value", str, Network)


def _unique_sorted(values: Iterable[Value]) -> tuple[Value, ...]:
    return tuple(sorted(set(values), key=str))


class ConnectorConfig(BaseModel):
    """One connector as the organization file declares it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: StrictStr
    direction: Direction
    kind: ConnectorKind
    sender_domains: tuple[DomainRule, ...] = ()
    recipient_domains: tuple[DomainRule, ...] = ()
    client_ips: tuple[NetworkRule, ...] = ()
    smart_hosts: tuple[SmartHost, ...] = ()
    tls_cert_names: tuple[DomainRule, ...] = ()
    require_tls: StrictBool = False
    routes: tuple[RouteName, ...] = ()

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        name = value.strip()
        if not 1 <= len(name) <= 200 or not name.isprintable():
            raise ValueError(f"{shown(value)} is not a connector name; use 1 to 200 printable "
                             "characters")
        return name

    @field_validator("direction", mode="before")
    @classmethod
    def _parse_direction(cls, value: object) -> Direction:
        return Direction(_choice(value, [member.value for member in Direction]))

    @field_validator("kind", mode="before")
    @classmethod
    def _parse_kind(cls, value: object) -> ConnectorKind:
        return ConnectorKind(_choice(value, [member.value for member in ConnectorKind]))

    @field_validator(
        "sender_domains", "recipient_domains", "client_ips", "smart_hosts", "tls_cert_names",
    )
    @classmethod
    def _sort(cls, values: tuple[Value, ...]) -> tuple[Value, ...]:
        return _unique_sorted(values)

    @field_validator("routes")
    @classmethod
    def _unique_routes(cls, routes: tuple[str, ...]) -> tuple[str, ...]:
        """Routes compare without regard to case: the first spelling of each is kept."""
        unique: dict[str, str] = {}
        for route in routes:
            unique.setdefault(route.casefold(), route)
        return tuple(sorted(unique.values(), key=str.casefold))

    @model_validator(mode="after")
    def _check_rules_fit_direction(self, info: ValidationInfo) -> Self:
        if self.direction is Direction.INBOUND:
            misplaced, only = OUTBOUND_ONLY, INBOUND_ONLY
        else:
            misplaced, only = INBOUND_ONLY, OUTBOUND_ONLY
        usable = only + EITHER_DIRECTION
        spell = _spelling_of(info)
        spelled = [spell(key) for key in usable]
        direction = self.direction.value.lower()
        for key in misplaced:
            if getattr(self, key):
                raise KeyedValueError(
                    f".{spell(key)}", f"an {direction} connector cannot have {spell(key)}; "
                    f"{direction} connectors match by {_either(spelled)}"
                )
        if not any(getattr(self, key) for key in usable):
            raise ValueError(
                f"an {direction} connector needs at least one of {_either(spelled)}, "
                "or it would match no mail"
            )
        return self

    def as_row(self) -> tuple[Any, ...]:
        """The connector's columns after organization_id and id, as the SQL files take them."""
        return (
            self.name, self.direction.value, self.kind.value, list(self.sender_domains),
            list(self.recipient_domains), list(self.client_ips), list(self.smart_hosts),
            list(self.tls_cert_names), self.require_tls, list(self.routes),
        )

    def as_connector(self, connector_id: int) -> Connector:
        """The connector as stored under ``connector_id``."""
        return Connector(
            id=connector_id, name=self.name, direction=self.direction, kind=self.kind,
            sender_domains=self.sender_domains, recipient_domains=self.recipient_domains,
            client_ips=tuple(str(network) for network in self.client_ips),
            smart_hosts=self.smart_hosts, tls_cert_names=self.tls_cert_names,
            require_tls=self.require_tls, routes=self.routes,
        )


def _as_written(key: str) -> str:
    return key


def _spelling_of(info: ValidationInfo) -> Spelling:
    context = info.context if isinstance(info.context, dict) else {}
    spelling: Spelling = context.get("spelling", _as_written)
    return spelling


class OrganizationConfig(BaseModel):
    """An organization file: the organization, its domains, networks and connectors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    organization: StrictStr
    accepted_domains: tuple[DomainRule, ...] = ()
    internal_networks: tuple[InternalNetworkRule, ...] = ()
    connectors: tuple[ConnectorConfig, ...] = ()

    @field_validator("organization")
    @classmethod
    def _check_organization(cls, value: str) -> str:
        if ORGANIZATION_NAME.match(value) is None:
            raise ValueError(
                f"{shown(value)} is not a valid organization name; {ORGANIZATION_NAME_RULE}"
            )
        return value

    @field_validator("accepted_domains", "internal_networks")
    @classmethod
    def _sort(cls, values: tuple[Value, ...]) -> tuple[Value, ...]:
        return _unique_sorted(values)

    @field_validator("connectors", mode="after")
    @classmethod
    def _check_unique_names(
        cls, connectors: tuple[ConnectorConfig, ...]
    ) -> tuple[ConnectorConfig, ...]:
        if len(connectors) > MAX_CONNECTORS:
            raise ValueError(
                f"{len(connectors)} connectors is more than the {MAX_CONNECTORS} an organization "
                "may have"
            )
        seen: dict[str, int] = {}
        for index, connector in enumerate(connectors):
            first = seen.setdefault(connector.name.casefold(), index)
            if first != index:
                raise KeyedValueError(
                    f"[{index}].name", f"{shown(connector.name)} is already the name of "
                    f"connectors[{first}]; connector names must be unique"
                )
        return connectors

    @property
    def name(self) -> str:
        return self.organization


MAX_FILE_CHARACTERS = 1_000_000


def load_organization_file(path: Path) -> OrganizationConfig:
    """Read and validate an organization file; OrganizationFileError names every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise OrganizationFileError(f"{path}: cannot read the organization file: {error}") from None
    return parse_organization(text, source=str(path))


def parse_organization(text: str, *, source: str = "<organization file>") -> OrganizationConfig:
    """Validate the YAML text of an organization file."""
    if len(text) > MAX_FILE_CHARACTERS:
        raise OrganizationFileError(
            f"{source}: {len(text)} characters is too long for an organization file; "
            f"at most {MAX_FILE_CHARACTERS} are accepted"
        )
    try:
        document = yaml.load(text, Loader=_UniqueKeyLoader)
    except RecursionError:
        raise OrganizationFileError(
            f"{source}: nested too deeply to be an organization file"
        ) from None
    except yaml.MarkedYAMLError as error:
        raise OrganizationFileError(f"{source}: {_describe_yaml_error(error)}") from None
    except yaml.YAMLError as error:
        raise OrganizationFileError(f"{source}: not valid YAML: {error}") from None
    if document is None:
        raise OrganizationFileError(
            f"{source}: the file is empty; it needs at least the key organization"
        )
    if not isinstance(document, dict):
        raise OrganizationFileError(
            f"{source}: expected a mapping with the keys organization, accepted_domains, "
            f"internal_networks and connectors, found {type(document).__name__}"
        )
    try:
        return OrganizationConfig.model_validate(document)
    except ValidationError as error:
        raise OrganizationFileError(f"{source}: {_problems(error)}") from None


def _problems(error: ValidationError, root: str = "", spelling: Spelling = _as_written) -> str:
    """Every problem of ``error``, one a line, each as 'key.path: what is wrong'."""
    problems = [_describe_problem(detail, root, spelling) for detail in error.errors()]
    if len(problems) == 1:
        return problems[0]
    return f"{len(problems)} problems:\n" + "\n".join(f"  {problem}" for problem in problems)


def connector_config(
    values: Mapping[str, object], *, subject: str, spelling: Spelling = _as_written
) -> ConnectorConfig:
    """One connector from the keys of the organization file, checked by the file's rules.

    OrganizationValueError names every problem under ``subject`` (the argument that held the
    values), with keys spelt by ``spelling``.
    """
    try:
        return ConnectorConfig.model_validate(values, context={"spelling": spelling})
    except ValidationError as error:
        raise OrganizationValueError(_problems(error, subject, spelling)) from None


_ACCEPTED_DOMAINS = TypeAdapter(tuple[DomainRule, ...])
_INTERNAL_NETWORKS = TypeAdapter(tuple[InternalNetworkRule, ...])


def accepted_domain_values(values: Sequence[str], *, subject: str) -> tuple[str, ...]:
    """Accepted domains checked and normalized as the organization file's; in order, unique."""
    try:
        domains = _ACCEPTED_DOMAINS.validate_python(tuple(values))
    except ValidationError as error:
        raise OrganizationValueError(_problems(error, subject)) from None
    return tuple(dict.fromkeys(domains))


def internal_network_values(values: Sequence[str], *, subject: str) -> tuple[Network, ...]:
    """Internal networks checked and normalized as the organization file's; in order, unique."""
    try:
        networks = _INTERNAL_NETWORKS.validate_python(tuple(values))
    except ValidationError as error:
        raise OrganizationValueError(_problems(error, subject)) from None
    return tuple(dict.fromkeys(networks))


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice in one mapping instead of keeping the last.

    It refuses aliases too: a few nested aliases expand to gigabytes ("billion laughs"), and
    an organization file is short enough to write its values out.
    """

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, f"the alias *{event.anchor} is not accepted in an organization "
                "file; write the values out", event.start_mark,
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {shown(key)} appears twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


SHOWN_LENGTH = 80


def shown(value: object) -> str:
    """``repr(value)`` for an error message, cut to about SHOWN_LENGTH characters."""
    text = repr(value)
    if len(text) <= SHOWN_LENGTH:
        return text
    length = len(value) if isinstance(value, str) else len(text)
    return f"{text[:SHOWN_LENGTH]}... ({length} characters)"


def _describe_yaml_error(error: yaml.MarkedYAMLError) -> str:
    mark = error.problem_mark or error.context_mark
    problem = error.problem or error.context or "not valid YAML"
    if mark is None:
        return f"not valid YAML: {problem}"
    return f"line {mark.line + 1}, column {mark.column + 1}: not valid YAML: {problem}"


def _describe_problem(detail: ErrorDetails, root: str, spelling: Spelling) -> str:
    """One validation problem as 'key.path: what is wrong and what would be accepted'."""
    path = _key_path(detail["loc"], root, spelling)
    kind, value = detail["type"], detail.get("input")
    if kind == "extra_forbidden":
        parent = ConnectorConfig if "connectors" in path else OrganizationConfig
        keys = ", ".join(spelling(key) for key in parent.model_fields)
        return f"{path}: unknown key; expected one of {keys}"
    if kind == "missing":
        return f"{path}: is required"
    if kind == "value_error":
        error = detail.get("ctx", {}).get("error", detail["msg"])
        if isinstance(error, KeyedValueError):
            path += error.key
        return f"{path}: {error}"
    if kind in ("bool_type", "bool_parsing"):
        return f"{path}: {shown(value)} is not true or false"
    if kind in ("string_type", "str_type"):
        return f"{path}: {shown(value)} is not a string; put it in quotes"
    if kind in ("tuple_type", "list_type"):
        return f"{path}: {shown(value)} is not a list; write it as a YAML list"
    if kind == "model_type":
        return f"{path}: {shown(value)} is not a mapping of keys to values"
    return f"{path}: {shown(value)}: {detail['msg']}"


def _key_path(location: tuple[int | str, ...], root: str, spelling: Spelling) -> str:
    path = root
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part not in ("function-after[]", "function-before[]") and not part.startswith(
            ("function-", "lax-", "strict-", "json-")
        ):
            path += f".{spelling(part)}" if path else spelling(part)
    return path


def check_organization_name(name: str) -> None:
    """Raise InvalidOrganizationNameError unless ``name`` follows the naming rule."""
    if ORGANIZATION_NAME.match(name) is None:
        raise InvalidOrganizationNameError(
            f"{shown(name)} is not a valid organization name; {ORGANIZATION_NAME_RULE}"
        )


# The database.


@dataclass
class ApplyResult:
    """What ``apply_organization`` did, by connector name."""

    organization_id: int
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    organization_created: bool = False
    accepted_domains_changed: bool = False
    internal_networks_changed: bool = False

    @property
    def changed(self) -> bool:
        """Whether the database differs from before the file was applied."""
        return bool(
            self.created or self.updated or self.removed or self.organization_created
            or self.accepted_domains_changed or self.internal_networks_changed
        )


async def find_organization(connection: Connection, name: str) -> int | None:
    """The id of the organization called ``name``, or None."""
    organization_id: int | None = await connection.fetchval(query("organization_find"), name)
    return organization_id


async def ensure_organization(connection: Connection, name: str) -> int:
    """The id of the organization called ``name``, created when missing."""
    organization_id, _ = await _ensure_organization(connection, name)
    return organization_id


async def _ensure_organization(connection: Connection, name: str) -> tuple[int, bool]:
    check_organization_name(name)
    created: int | None = await connection.fetchval(query("organization_create"), name)
    if created is not None:
        return created, True
    existing = await find_organization(connection, name)
    assert existing is not None, "an organization that conflicted on insert must exist"
    return existing, False


async def apply_organization(
    connection: Connection, config: OrganizationConfig
) -> ApplyResult:
    """Make the database match an organization file, in one transaction of the connection's
    own role (the owner: it may create the organization) on that organization's rows.

    Creates the organization when missing, replaces its accepted domains and
    internal networks, and creates, updates or removes connectors, matched by
    name without regard to case (a change of case renames the connector in place;
    any other renamed connector is removed and created anew). Applying the same
    file twice changes nothing the second time.

    A changed rule applies to mail ingested afterwards: facts already stored
    keep their connector. Facts of a removed connector become "no connector",
    and the daily rollups of the days they fall on are refreshed in the same
    transaction, so reports keep equalling the facts.
    """
    async with connection.transaction():
        organization_id, created = await _ensure_organization(connection, config.organization)
        await enter_organization(connection, organization_id)
        await connection.execute(query("organization_lock"), organization_id)
        result = ApplyResult(organization_id, organization_created=created)
        result.accepted_domains_changed = await _replace(
            connection, "organization_replace_accepted_domains", organization_id,
            list(config.accepted_domains))
        result.internal_networks_changed = await _replace(
            connection, "organization_replace_internal_networks", organization_id,
            list(config.internal_networks))
        await _apply_connectors(connection, organization_id, config.connectors, result)
    return result


async def _replace(
    connection: Connection, query_name: str, organization_id: int, values: list[Any]
) -> bool:
    changes: int = await connection.fetchval(query(query_name), organization_id, values)
    return changes > 0


async def _apply_connectors(
    connection: Connection, organization_id: int,
    connectors: Sequence[ConnectorConfig], result: ApplyResult,
) -> None:
    existing = await load_connectors(connection, organization_id)
    matches = _match_connectors(existing, connectors)
    renamed = [
        current.id for config, current in matches
        if current is not None and current.name != config.name
    ]
    kept = {current.id for _, current in matches if current is not None}
    removed = [current for current in existing if current.id not in kept]
    # Every connector row this apply will delete or rename, locked up front in id order (see
    # remove_connectors); changing only rules takes no lock that an ingest waits for.
    await _lock_connectors(connection, organization_id, renamed + [c.id for c in removed])

    for config, current in matches:
        if current is None:
            await connection.execute(query("connector_create"), organization_id, *config.as_row())
            result.created.append(config.name)
        elif current.name != config.name or _differs(current, config):
            await connection.execute(
                query("connector_update"), organization_id, current.id, *config.as_row())
            result.updated.append(config.name)
        else:
            result.unchanged.append(config.name)

    if removed:
        await remove_connectors(connection, organization_id, [c.id for c in removed])
        result.removed.extend(sorted(c.name for c in removed))


def _match_connectors(
    existing: Sequence[Connector], connectors: Sequence[ConnectorConfig]
) -> list[tuple[ConnectorConfig, Connector | None]]:
    """Each connector of the file with the stored connector it updates, or None to create one.

    Names match without regard to case, as the file's own uniqueness check compares them, so
    that changing only the case of a name renames the connector in place and keeps its facts.
    An exact match is preferred, for a database holding names that differ only in case.
    """
    unmatched = {connector.id: connector for connector in existing}
    by_name = {connector.name: connector for connector in existing}
    matches: dict[int, Connector] = {}
    for index, config in enumerate(connectors):
        current = by_name.get(config.name)
        if current is not None:
            matches[index] = unmatched.pop(current.id)
    folded: dict[str, Connector] = {}
    for connector in unmatched.values():
        folded.setdefault(connector.name.casefold(), connector)
    for index, config in enumerate(connectors):
        if index not in matches:
            current = folded.pop(config.name.casefold(), None)
            if current is not None:
                matches[index] = current
    return [(config, matches.get(index)) for index, config in enumerate(connectors)]


def _differs(current: Connector, config: ConnectorConfig) -> bool:
    return (
        current.direction, current.kind, current.sender_domains, current.recipient_domains,
        current.client_ips, current.smart_hosts, current.tls_cert_names, current.require_tls,
        current.routes,
    ) != (
        config.direction, config.kind, config.sender_domains, config.recipient_domains,
        tuple(str(network) for network in config.client_ips), config.smart_hosts,
        config.tls_cert_names, config.require_tls, config.routes,
    )


async def _lock_connectors(
    connection: Connection, organization_id: int, connector_ids: Sequence[int]
) -> None:
    if connector_ids:
        await connection.execute(
            query("connector_lock"), organization_id, sorted(set(connector_ids)))


async def remove_connectors(
    connection: Connection, organization_id: int, connector_ids: Sequence[int]
) -> None:
    """Delete connectors; their facts become "no connector" and the rollups of their days
    are refreshed. Call inside a transaction, before any rollup refresh in it.

    Safe against ingests running concurrently with connectors loaded before the removal:
    storing a fact takes FOR KEY SHARE on its connector (``store_facts``), so deleting the
    connector first waits for those ingests to commit, and an ingest that comes later finds
    it gone and stores "no connector". The facts are detached only then: under READ COMMITTED
    that statement sees every fact committed while the delete waited.
    """
    # Deadlocks: every transaction takes these locks in one order: the organization row (apply
    # only), connector rows in id order (apply FOR UPDATE here; ingests FOR KEY SHARE before
    # inserting facts), then the organization's rollup advisory lock (refresh_rollups, last in
    # both), so no two can wait for each other in a cycle. Ingests never lock the organization
    # row; an ingest waiting here holds no rollup lock yet, and the apply it waits for takes
    # that lock only after all its connector rows. A caller storing facts after refreshing
    # rollups in one transaction would break the order (PostgreSQL would abort one of the two).
    #
    # Not a foreign key (organization_id, connector_id) ON DELETE SET NULL (connector_id): its
    # insert check would reject, not detach, the facts of a connector removed since they were
    # classified, failing the ingest; it would not return the days whose rollups to refresh,
    # and daily_rollups cannot take it (SET NULL would collide with the day's "no connector"
    # row); and adding it would validate every stored fact. The locks give the same guarantee.
    await _lock_connectors(connection, organization_id, connector_ids)
    await connection.execute(query("connector_delete"), organization_id, list(connector_ids))
    # Scans the organization's facts: message_facts has no index on connector_id, and
    # removing a connector is a rare administrative step.
    days = [
        row["day"]
        for row in await connection.fetch(
            query("connector_detach_facts"), organization_id, list(connector_ids))
    ]
    if days:
        await refresh_rollups(connection, organization_id, days)


async def load_connectors(connection: Connection, organization_id: int) -> list[Connector]:
    """The organization's connectors, ordered by name."""
    rows = await connection.fetch(query("connector_list"), organization_id)
    return [
        Connector(
            id=row["id"],
            name=row["name"],
            direction=Direction(row["direction"]),
            kind=ConnectorKind(row["kind"]),
            sender_domains=tuple(row["sender_domains"]),
            recipient_domains=tuple(row["recipient_domains"]),
            client_ips=tuple(str(network) for network in row["client_ips"]),
            smart_hosts=tuple(row["smart_hosts"]),
            tls_cert_names=tuple(row["tls_cert_names"]),
            require_tls=row["require_tls"],
            routes=tuple(row["routes"]),
        )
        for row in rows
    ]


async def load_accepted_domains(connection: Connection, organization_id: int) -> list[str]:
    """The organization's accepted domains, sorted; ``*.`` entries stand for subdomains."""
    rows = await connection.fetch(query("organization_accepted_domains"), organization_id)
    return [row["domain"] for row in rows]


async def load_internal_networks(
    connection: Connection, organization_id: int
) -> list[Network]:
    """The internal networks the organization declared (without the defaults)."""
    rows = await connection.fetch(query("organization_internal_networks"), organization_id)
    return [ipaddress.ip_network(row["network"]) for row in rows]



# One change at a time: each function below runs in one transaction that holds the organization
# row, as apply does, so it takes turns with applies and with the others.


async def create_connector(
    connection: Connection, organization_id: int, config: ConnectorConfig
) -> Connector:
    """Create a connector; ConnectorNameTakenError when another one has its name.

    Its rules apply to mail ingested afterwards; facts already stored keep their connector.
    """
    async with connection.transaction():
        await connection.execute(query("organization_lock"), organization_id)
        existing = await load_connectors(connection, organization_id)
        if len(existing) >= MAX_CONNECTORS:
            raise TooManyConnectorsError(
                f"the organization has {len(existing)} connectors, the most it may have "
                f"({MAX_CONNECTORS}); delete one first"
            )
        _check_name_free(existing, config.name)
        connector_id: int = await connection.fetchval(
            query("connector_create"), organization_id, *config.as_row())
    return config.as_connector(connector_id)


async def update_connector(
    connection: Connection, organization_id: int, connector_id: int,
    changes: Mapping[str, object], *, subject: str, spelling: Spelling = _as_written,
) -> Connector | None:
    """Change some keys of a connector (as the organization file names them); None when the
    organization has no connector ``connector_id``.

    The connector with the changes must pass the file's rules (OrganizationValueError names
    what breaks them, under ``subject``). A new name keeps the connector's id and its facts;
    ConnectorNameTakenError when another connector has it. Changed rules apply to mail
    ingested afterwards, as with ``apply_organization``.
    """
    async with connection.transaction():
        await connection.execute(query("organization_lock"), organization_id)
        existing = await load_connectors(connection, organization_id)
        current = next((c for c in existing if c.id == connector_id), None)
        if current is None:
            return None
        config = connector_config(
            {**connector_values(current), **changes}, subject=subject, spelling=spelling)
        _check_name_free(existing, config.name, other_than=current.id)
        if config.name != current.name:
            await _lock_connectors(connection, organization_id, [current.id])  # as apply does
        if config.name != current.name or _differs(current, config):
            await connection.execute(
                query("connector_update"), organization_id, current.id, *config.as_row())
    return config.as_connector(current.id)


async def delete_connector(
    connection: Connection, organization_id: int, connector_id: int
) -> Connector | None:
    """Delete a connector as ``apply_organization`` removes one: its facts become "no
    connector" and the rollups of their days are recounted. None when there is no such one."""
    async with connection.transaction():
        await connection.execute(query("organization_lock"), organization_id)
        existing = await load_connectors(connection, organization_id)
        current = next((c for c in existing if c.id == connector_id), None)
        if current is not None:
            await remove_connectors(connection, organization_id, [current.id])
    return current


def connector_values(connector: Connector) -> dict[str, object]:
    """A stored connector as the keys and values of an organization file."""
    return {
        "name": connector.name,
        "direction": connector.direction.value,
        "kind": connector.kind.value,
        "sender_domains": connector.sender_domains,
        "recipient_domains": connector.recipient_domains,
        "client_ips": connector.client_ips,
        "smart_hosts": connector.smart_hosts,
        "tls_cert_names": connector.tls_cert_names,
        "require_tls": connector.require_tls,
        "routes": connector.routes,
    }


def _check_name_free(
    existing: Sequence[Connector], name: str, *, other_than: int | None = None
) -> None:
    for connector in existing:
        if connector.id != other_than and connector.name.casefold() == name.casefold():
            raise ConnectorNameTakenError(
                f"{shown(name)} is already the name of a connector of the organization "
                f"({shown(connector.name)}; names are compared without regard to case); "
                "choose another name, or update or delete that connector"
            )


@dataclass(frozen=True, slots=True)
class ValuesChanged:
    """The organization's values after a change, and those the change added or removed."""

    values: tuple[str, ...]
    changed: tuple[str, ...]


async def add_accepted_domains(
    connection: Connection, organization_id: int, domains: Sequence[str], *, subject: str
) -> ValuesChanged:
    """Add accepted domains, checked as the organization file's; those already there are kept
    (and not counted as changed)."""
    wanted = list(accepted_domain_values(domains, subject=subject))
    async with connection.transaction():
        await connection.execute(query("organization_lock"), organization_id)
        rows = await connection.fetch(
            query("organization_add_accepted_domains"), organization_id, wanted)
        values = await load_accepted_domains(connection, organization_id)
    return ValuesChanged(tuple(values), tuple(sorted(row["domain"] for row in rows)))


async def remove_accepted_domains(
    connection: Connection, organization_id: int, domains: Sequence[str], *, subject: str
) -> ValuesChanged:
    """Remove accepted domains; AcceptedDomainNotFoundError, and nothing removed, when one of
    them is not an accepted domain of the organization."""
    wanted = list(accepted_domain_values(domains, subject=subject))
    async with connection.transaction():
        await connection.execute(query("organization_lock"), organization_id)
        current = await load_accepted_domains(connection, organization_id)
        missing = [domain for domain in wanted if domain not in current]
        if missing:
            raise AcceptedDomainNotFoundError(
                f"{_listed(missing)} {_is_or_are(missing)} not among the organization's "
                f"accepted domains ({_listed(current) or 'none'}); nothing was removed"
            )
        await connection.execute(
            query("organization_remove_accepted_domains"), organization_id, wanted)
    return ValuesChanged(
        tuple(domain for domain in current if domain not in wanted), tuple(sorted(wanted)))


async def add_internal_networks(
    connection: Connection, organization_id: int, networks: Sequence[str], *, subject: str
) -> ValuesChanged:
    """Declare internal networks, checked as the organization file's; those already declared
    are kept (and not counted as changed)."""
    wanted = list(internal_network_values(networks, subject=subject))
    async with connection.transaction():
        await connection.execute(query("organization_lock"), organization_id)
        rows = await connection.fetch(
            query("organization_add_internal_networks"), organization_id, wanted)
        values = await load_internal_networks(connection, organization_id)
    added = [ipaddress.ip_network(row["network"]) for row in rows]
    return ValuesChanged(_texts(values), _texts(_in_order(added)))


async def remove_internal_networks(
    connection: Connection, organization_id: int, networks: Sequence[str], *, subject: str
) -> ValuesChanged:
    """Remove declared internal networks; InternalNetworkNotFoundError, and nothing removed,
    when one of them is not declared (the default ranges cannot be removed)."""
    wanted = list(internal_network_values(networks, subject=subject))
    async with connection.transaction():
        await connection.execute(query("organization_lock"), organization_id)
        current = await load_internal_networks(connection, organization_id)
        missing = [network for network in wanted if network not in current]
        if missing:
            raise InternalNetworkNotFoundError(
                f"{_listed(_texts(missing))} {_is_or_are(missing)} not among the "
                f"organization's declared internal networks ({_listed(_texts(current)) or 'none'}; "
                "the default private and loopback ranges are always internal and cannot be "
                "removed); nothing was removed"
            )
        await connection.execute(
            query("organization_remove_internal_networks"), organization_id, wanted)
    remaining = [network for network in current if network not in wanted]
    return ValuesChanged(_texts(remaining), _texts(_in_order(wanted)))


LISTED_VALUES = 10


def _listed(values: Sequence[object]) -> str:
    """Up to LISTED_VALUES values quoted for a message, and how many more there are."""
    shown_values = ", ".join(shown(str(value)) for value in values[:LISTED_VALUES])
    more = len(values) - LISTED_VALUES
    return shown_values + (f" and {more} more" if more > 0 else "")


def _is_or_are(values: Sequence[object]) -> str:
    return "is" if len(values) == 1 else "are"


def _texts(networks: Iterable[Network]) -> tuple[str, ...]:
    return tuple(str(network) for network in networks)


def _in_order(networks: Iterable[Network]) -> list[Network]:
    """IPv4 before IPv6, then by address and prefix, as PostgreSQL sorts cidr values."""
    return sorted(networks, key=lambda network: (network.version, network))
