"""The HTTP edge: the FastAPI app (GraphQL route, REST operations), authentication, audit, limits and metrics."""
