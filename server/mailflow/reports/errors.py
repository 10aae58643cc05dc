"""The errors a report request can meet; each names the bad value and what would be accepted."""

from __future__ import annotations

from mailflow.errors import MailflowError


class InvalidDateRangeError(MailflowError):
    """A report range ends before it starts, or reaches past the dates reports can cover."""

    code = "INVALID_DATE_RANGE"


class RangeTooLongError(MailflowError):
    """A report range spans more days than the longest allowed range."""

    code = "RANGE_TOO_LONG"


class InvalidThresholdError(MailflowError):
    """An insight threshold is not a percent between 0 and 100."""

    code = "INVALID_THRESHOLD"


class ConflictingFiltersError(MailflowError):
    """Two report filters exclude each other."""

    code = "CONFLICTING_FILTERS"


class ConnectorNotFoundError(MailflowError):
    """The organization has no connector with the given id."""

    code = "CONNECTOR_NOT_FOUND"


class BadIdError(MailflowError):
    """An id is not one that the API handed out."""

    code = "BAD_ID"


class InvalidPolicyDomainError(MailflowError):
    """A policy domain argument is not a domain name."""

    code = "INVALID_POLICY_DOMAIN"


class InvalidResultTypeError(MailflowError):
    """A result type argument that no stored failure detail could have."""

    code = "INVALID_RESULT_TYPE"
