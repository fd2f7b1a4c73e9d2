"""`python -m api.cli`: the `twin` command line."""

from api.cli.app import app

app()
