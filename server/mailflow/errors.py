"""Domain errors: each carries a machine-readable ``code`` and readable text.

The API turns these into GraphQL errors at one boundary; the CLI prints the text.
"""

from __future__ import annotations


class MailflowError(Exception):
    """Base of mailflow's domain errors; ``str(error)`` says what went wrong."""

    code: str = "BAD_REQUEST"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class OrganizationFileError(MailflowError):
    """An organization file could not be read or does not describe a valid organization."""

    code = "INVALID_ORGANIZATION_FILE"


class InvalidOrganizationNameError(MailflowError):
    """An organization name breaks the naming rule."""

    code = "INVALID_ORGANIZATION_NAME"


class UnknownOrganizationError(MailflowError):
    """No organization has the given name or id."""

    code = "ORGANIZATION_NOT_FOUND"
