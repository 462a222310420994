"""/v1/catalog: what a spec may name."""

from __future__ import annotations

from typing import get_args

from fastapi import APIRouter

from api.deps import PrincipalDep
from api.errors import problem_responses
from api.schemas import Catalog
from models.activations import activation_names
from models.initializers import init_names
from models.kinds.names import LossName
from models.registry import MODEL_KINDS
from models.regularizers import REGULARIZERS
from services.contract.sections import OptimizerSpec, ScheduleSpec
from workers.data import builtin_datasets

router = APIRouter(prefix="/v1", tags=["catalog"], responses=problem_responses(401))


@router.get("/catalog", response_model=Catalog)
def catalog(_: PrincipalDep) -> Catalog:
    return Catalog(
        models=[{"kind": f.kind, "description": f.description,
                 "schema": f.config_cls.model_json_schema(), "supports": sorted(f.honours)}
                for f in MODEL_KINDS],
        datasets=[{"name": d.name, "description": d.description,
                   "params_schema": d.params_cls.model_json_schema()}
                  for d in builtin_datasets()],
        activations=activation_names(),
        initializers=init_names(),
        regularizers=REGULARIZERS,
        optimizers=list(get_args(OptimizerSpec.model_fields["name"].annotation)),
        schedules=list(get_args(ScheduleSpec.model_fields["name"].annotation)),
        losses=list(get_args(LossName)),
    )
