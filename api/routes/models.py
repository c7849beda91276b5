"""/v1/models: a user's trading models (signature unique per user)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from api.deps import CallerDep, ServicesDep
from api.errors import problems
from api.paging import CursorQuery, decode_cursor, keyset_page
from api.schemas import ModelCreate, ModelOut, ModelPage, ModelUpdate

router = APIRouter(prefix="/v1/models", tags=["models"], responses=problems(401))
ModelId = Annotated[int, Path(ge=1, le=2**63 - 1, description="Model id")]


@router.post("", status_code=201, response_model=ModelOut,
             responses=problems(400, 409, 413, 422, why={409: "The signature is taken"}))
def create_model(body: ModelCreate, who: CallerDep, svc: ServicesDep,
                 response: Response) -> ModelOut:
    model = svc.store.create_model(who.user_id, body.signature, llm=body.llm,
                                   custom_rules=body.custom_rules,
                                   custom_instructions=body.custom_instructions,
                                   parameters=body.parameters)
    response.headers["Location"] = f"/v1/models/{model.id}"
    return ModelOut.of(model)


@router.get("", response_model=ModelPage, responses=problems(400, 422))
def list_models(who: CallerDep, svc: ServicesDep,
                cursor: CursorQuery = None,
                limit: Annotated[int, Query(ge=1, le=500)] = 50) -> ModelPage:
    models, next_cursor = keyset_page(
        svc.store.list_models(who.user_id, after_id=decode_cursor(cursor), limit=limit + 1),
        limit, lambda m: m.id)
    return ModelPage(items=[ModelOut.of(m) for m in models], next_cursor=next_cursor)


@router.get("/{model_id}", response_model=ModelOut, responses=problems(404, 422))
def get_model(model_id: ModelId, who: CallerDep, svc: ServicesDep) -> ModelOut:
    return ModelOut.of(svc.store.get_model(model_id, who.user_id))


@router.patch("/{model_id}", response_model=ModelOut,
              responses=problems(400, 404, 409, 413, 422, why={409: "The signature is taken"}))
def update_model(model_id: ModelId, body: ModelUpdate, who: CallerDep,
                 svc: ServicesDep) -> ModelOut:
    changes = body.model_dump(exclude_unset=True)
    if changes.get("signature", "") is None:
        del changes["signature"]
    if "parameters" in changes and changes["parameters"] is None:
        changes["parameters"] = {}
    return ModelOut.of(svc.store.update_model(model_id, who.user_id, changes))


@router.delete("/{model_id}", status_code=204, response_class=Response,
               responses=problems(404, 409, 422, why={409: "The model has runs"}))
def delete_model(model_id: ModelId, who: CallerDep, svc: ServicesDep) -> Response:
    svc.store.delete_model(model_id, who.user_id)
    return Response(status_code=204)
