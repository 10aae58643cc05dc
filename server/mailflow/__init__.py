"""mailflow: a GraphQL reporting backend for mail that crosses an organization's boundary."""

__version__ = "0.1.0"
