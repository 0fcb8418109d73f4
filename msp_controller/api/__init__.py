"""The REST API, its OpenAPI document, its service over the core, tokens, and the command-line tools."""
