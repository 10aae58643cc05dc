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


# Errors raised by modules that mypyc compiles live here: a compiled class loses the ``code``
# it sets for its subclass.
class InvalidMessageFactError(MailflowError, ValueError):
    """A message fact holds a value that cannot be stored as given."""

    code = "INVALID_MESSAGE_FACT"


class ParserStateError(MailflowError, ValueError):
    """A saved parser state that this version of the parser cannot take up."""

    code = "INVALID_PARSER_STATE"
