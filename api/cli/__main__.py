"""`python -m api.cli`: the `layerwise` command without its console script."""

from api.cli import app

app()
