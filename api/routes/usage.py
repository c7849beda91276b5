"""/v1/usage: what a user's runs spent on LLM calls, and their daily limit.

GET /v1/usage: the caller's tokens and cost per UTC day and model, today's spend against
their daily limit. Operators (TICKRUN_OPERATOR_USER_IDS, or the `tickrun dev` token)
may read anyone's (`?user_id=`) and set a user's own daily limit with PUT
/v1/usage/limits/{user_id}; DELETE puts the user back on the default
(TICKRUN_USER_DAILY_COST_USD). A user over their limit has new runs wait queued.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from api.auth import Caller
from api.deps import CallerDep, ServicesDep, is_operator
from api.errors import ApiProblem, problems
from api.services import Services
from core.spend import Spend, UsageRow, day_window, plain, utc_day

router = APIRouter(prefix="/v1/usage", tags=["usage"], responses=problems(401))

UserPath = Annotated[str, Path(min_length=1, max_length=200, description="The user's id")]


class SpendOut(BaseModel):
    decisions: int
    tokens_in: int
    tokens_out: int
    tokens_cached: int = Field(description="Of tokens_in, served from the provider's cache")
    cost_usd: Decimal = Field(description="Known cost; decisions without one are counted in "
                                          "unknown_cost_decisions, never guessed")
    unknown_cost_decisions: int

    @classmethod
    def of(cls, s: Spend) -> SpendOut:
        return cls(decisions=s.decisions, tokens_in=s.tokens_in, tokens_out=s.tokens_out,
                   tokens_cached=s.tokens_cached, cost_usd=plain(s.cost_usd),
                   unknown_cost_decisions=s.unknown_cost)


class UsageDayOut(SpendOut):
    day: dt.date = Field(description="UTC day")
    model_id: int
    model: str = Field(description="The model's signature")
    llm: str | None

    @classmethod
    def of_row(cls, r: UsageRow) -> UsageDayOut:
        return cls(day=r.day, model_id=r.model_id, model=r.signature, llm=r.llm,
                   **SpendOut.of(r.spend).model_dump())


class UsageOut(BaseModel):
    user_id: str
    today: dt.date = Field(description="The UTC day daily limits count")
    spent_today_usd: Decimal
    daily_limit_usd: Decimal | None = Field(description="None: no daily limit")
    limit_source: str = Field(description="`user` (an operator's limit for this user), "
                                          "`default` (TICKRUN_USER_DAILY_COST_USD) or `none`")
    days: list[UsageDayOut] = Field(description="Per UTC day and model, newest day first")


# Dollars as JSON carries them (a number, or a decimal string), kept to 8 places as the
# database does; the schema says exactly what is accepted.
Dollars = Annotated[
    Decimal, Field(ge=0, le=Decimal(1_000_000)),
    AfterValidator(lambda d: d.quantize(Decimal("0.00000001"))),
    WithJsonSchema({"anyOf": [
        {"type": "number", "minimum": 0, "maximum": 1_000_000},
        {"type": "string", "pattern": r"^(1000000(\.0{1,8})?|[0-9]{1,6}(\.[0-9]{1,8})?)$"}]}),
]


class LimitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    daily_cost_usd: Dollars | None = Field(
        description="US dollars of LLM cost per UTC day; null: no limit for this user")


@router.get("", response_model=UsageOut, responses=problems(403, 422, why={
    403: "Reading another user's usage is for operators"}))
def get_usage(who: CallerDep, svc: ServicesDep,
              days: Annotated[int, Query(ge=1, le=366, description="UTC days back")] = 30,
              user_id: Annotated[str | None, Query(
                  min_length=1, max_length=200, description="Operators: this user's")] = None,
              ) -> UsageOut:
    """The caller's LLM tokens and cost per UTC day and model, and today's spend
    against their daily limit."""
    user = _readable_user(who, svc, user_id)
    today = utc_day(dt.datetime.now(dt.UTC))
    since, until = day_window(today - dt.timedelta(days=days - 1))[0], day_window(today)[1]
    rows = svc.store.usage(user, since, until)
    own = svc.store.daily_limits([user])
    default = svc.spend.user_daily_cost_usd
    limit = own.get(user, default)
    source = "user" if user in own else ("default" if default is not None else "none")
    spent = sum((r.spend.cost_usd for r in rows if r.day == today), Decimal(0))
    return UsageOut(user_id=user, today=today, spent_today_usd=plain(spent),
                    daily_limit_usd=None if limit is None else plain(limit),
                    limit_source=source, days=[UsageDayOut.of_row(r) for r in rows])


@router.put("/limits/{user_id}", status_code=204, responses=problems(400, 403, 413, 422, why={
    403: "Setting limits is for operators"}))
def set_limit(user_id: UserPath, body: LimitIn, who: CallerDep, svc: ServicesDep) -> Response:
    """Set a user's own daily LLM spend limit (null: none); the next admission pass and
    the user's running runs apply it."""
    _require_operator(who, svc)
    svc.store.set_daily_limit(user_id, body.daily_cost_usd, by=who.user_id)
    svc.wake_controller()
    return Response(status_code=204)


@router.delete("/limits/{user_id}", status_code=204, responses=problems(403, 404, 422, why={
    403: "Setting limits is for operators", 404: "The user has no limit of their own"}))
def clear_limit(user_id: UserPath, who: CallerDep, svc: ServicesDep) -> Response:
    """Put the user back on the default daily limit."""
    _require_operator(who, svc)
    if not svc.store.clear_daily_limit(user_id):
        raise ApiProblem(404, f"user {user_id!r} has no daily limit of their own")
    svc.wake_controller()
    return Response(status_code=204)


def _readable_user(who: Caller, svc: Services, user_id: str | None) -> str:
    if user_id is None or user_id == who.user_id:
        return who.user_id
    _require_operator(who, svc)
    return user_id


def _require_operator(who: Caller, svc: Services) -> None:
    if not is_operator(who, svc):
        raise ApiProblem(403, "usage limits and other users' usage are for operators "
                              "(TICKRUN_OPERATOR_USER_IDS)")
