"""The operator surface over HTTP: the REST API, its OpenAPI document and the dashboard."""
