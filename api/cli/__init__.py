"""The `twin` command line: the lazy top-level group (api/cli/app.py) and one module per command."""
