"""The GraphQL API: schema, request context, authentication and the Starlette application."""
