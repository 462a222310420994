"""/v1/compare: several runs' per-layer curves side by side and their loss and accuracy curves
overlaid, as one table or one figure."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Response
from mlflow.tracking import MlflowClient

from api.deps import PrincipalDep, SettingsDep, StoreDep, visible_job
from api.errors import problem_responses
from services.run_comparison import Comparison, NormName
from workers.tracking.comparison import epoch_curves, layer_curves, run_layers, summarize

router = APIRouter(prefix="/v1", tags=["compare"],
                   responses=problem_responses(400, 401, 404, 409, 413, 422, 429, 500, 503))

MAX_RUNS = 8
JOB_ID = r"[A-Za-z0-9_.-]{1,64}"


@router.get("/compare", response_model=Comparison,
            responses={200: {"content": {"image/png": {}},
                             "description": "the table (JSON), or with format=png the figure"}})
def compare(store: StoreDep, settings: SettingsDep, principal: PrincipalDep,
            ids: Annotated[str, Query(
                description=f"1 to {MAX_RUNS} job ids, comma-separated",
                pattern=rf"^{JOB_ID}(,{JOB_ID}){{0,{MAX_RUNS - 1}}}$", max_length=1000)],
            metric: NormName = "grad_norm",
            format: Literal["json", "png"] = "json") -> Comparison | Response:
    """Per-layer `metric` curves of each run and its loss and accuracy curves: a table of
    per-layer medians and last values with each run's verdict, final metrics and curves, or
    (format=png) one panel per run, side by side on a shared log scale, over the runs' loss
    and accuracy curves overlaid."""
    job_ids = list(dict.fromkeys(ids.split(",")))  # a repeated id is the same run once
    records = [visible_job(job_id, store, principal) for job_id in job_ids]
    for record in records:
        if record.mlflow_run_id is None:
            raise HTTPException(409, f"job {record.id} has no MLflow run yet (status "
                                     f"{record.status}); compare it once it has started")
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    rows, curves = [], []
    for record in records:
        assert record.mlflow_run_id is not None
        layers = run_layers(client, record)
        steps, values = layer_curves(client, record.mlflow_run_id, metric, layers)
        rows.append(summarize(record, layers, values,
                              epoch_curves(client, record.mlflow_run_id)))
        curves.append((record, layers, steps, values))
    if format == "json":
        return Comparison(metric=metric, runs=rows)
    from workers.diagnostics.training_plots import (  # matplotlib: only here
        RunCurves,
        compare_runs,
        png_bytes,
    )

    figure = compare_runs([RunCurves(_title(record.name, record.id, row.verdict), layers,
                                     steps, values,
                                     {key: (curve.steps, curve.values)
                                      for key, curve in row.curves.items()})
                           for (record, layers, steps, values), row in zip(curves, rows,
                                                                           strict=True)],
                          metric)
    return Response(png_bytes(figure), media_type="image/png")


def _title(name: str | None, job_id: str, verdict: str | None) -> str:
    label = name or job_id[:8]
    return f"{label} ({verdict})" if verdict else label
