"""The `layerwise` command (`app`, the console script of pyproject.toml): the service's own
processes (serve, dispatcher, ui) in `serving`, the client commands (submit, status, list,
cancel, sweep, sweeps, sweep-status, sweep-cancel, catalog, compare) in `jobs`, repair in
`repairing`, check (submit files and judge their `expect:`) in `checking`; what the client
commands share (options, the client, ids by their start, following a job) in `common`, what
they print in `output`."""

from __future__ import annotations

from api.cli import checking, common, jobs, logs, repairing, serving
from api.cli.output import LayerwiseApp

app = LayerwiseApp(help="Layerwise: train and dissect deep neural networks.\n\n--url and "
                        "--token go before the command (`layerwise --url X list`) or after "
                        "it; after it wins when both are given.",
                   no_args_is_help=True, pretty_exceptions_enable=False)


@app.callback()
def _connection(url: common.UrlOpt = None, token: common.TokenOpt = None) -> None:
    """Keep the --url and --token given before the command for the command's client."""
    common.given_first.url, common.given_first.token = url, token


# In the order `layerwise --help` lists them.
for _name, _command in (
        ("serve", serving.serve), ("dispatcher", serving.run_dispatcher),
        ("submit", jobs.submit), ("status", jobs.status), ("list", jobs.list_jobs),
        ("cancel", jobs.cancel), ("sweep", jobs.sweep), ("sweep-status", jobs.sweep_status),
        ("sweeps", jobs.list_sweeps), ("sweep-cancel", jobs.sweep_cancel),
        ("catalog", jobs.catalog), ("ui", serving.ui), ("compare", jobs.compare),
        ("repair", repairing.repair), ("check", checking.check), ("logs", logs.logs)):
    app.command(_name)(_command)

__all__ = ["app"]
