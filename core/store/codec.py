"""Rows <-> records, derived from the records' dataclass fields and their types.

A record is read from a row by its fields: each field's column has its name, and its
type says how to read it (Decimal, datetime, date, an enum, a pydantic model, JSON), so
adding a field to a record and a column to its table is the whole change. PostgreSQL
hands back Decimal, datetime and parsed JSON; SQLite hands back TEXT; every reader
accepts both. Writing goes the other way: `columns` turns values into what a column
takes (the Dialect encodes money, times, days and JSON), and `insert` builds the
statement from their names.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
import json
import types
import typing
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar, cast

from pydantic import BaseModel

if TYPE_CHECKING:
    from core.store.sqlbase import Dialect

Row = dict[str, Any]
R = TypeVar("R")
Read = Callable[[Any], Any]
_MISSING = dataclasses.MISSING


def dec(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def opt_dec(value: Any) -> Decimal | None:
    return None if value is None else dec(value)


def js(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def ts(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    parsed = dt.datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def day(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])


def holdings_to(holdings: dict[str, Decimal]) -> dict[str, str]:
    """A portfolio's holdings as stored: sorted, without the symbols it holds none of."""
    return {symbol: str(q) for symbol, q in sorted(holdings.items()) if q != 0}


# -- reading: a reader per type ----------------------------------------------------------
_SCALARS: dict[Any, Read] = {int: int, float: float, bool: bool, str: lambda v: v,
                             Decimal: dec, dt.datetime: ts, dt.date: day,
                             Any: lambda v: v}


def _reader(hint: Any, *, in_json: bool = False) -> Read:
    """How to read a value of type `hint` from a column (or, `in_json`, from inside a
    JSON column's document). A JSON container read as NULL is an empty one."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        inner = _reader(next(a for a in args if a is not type(None)), in_json=in_json)
        return lambda v: None if v is None else inner(v)
    if origin in (list, dict):
        item = _reader(args[-1], in_json=True)
        load: Read = (lambda v: v) if in_json else js
        if origin is list:
            return lambda v: [item(x) for x in load(v) or []]
        return lambda v: {k: item(x) for k, x in (load(v) or {}).items()}
    if hint in _SCALARS:
        return _SCALARS[hint]
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint
    if isinstance(hint, type) and issubclass(hint, BaseModel):
        if not in_json and hint.model_config.get("frozen"):
            return functools.partial(_frozen_model, hint)
        return lambda v: hint.model_validate(v if in_json else js(v))
    from_json = getattr(hint, "from_json", None)  # a record kept as JSON (an Order)
    if from_json is not None:
        return from_json  # type: ignore[no-any-return]
    return functools.partial(_unreadable, hint)  # a field callers give (record_from)


def _frozen_model(model: type[BaseModel], value: Any) -> BaseModel:
    """A frozen model (a run's spec) from its column: one instance per document text,
    which readers may share, since nobody can change it. Reading the spec was most of
    the cost of a page of runs (issue 27)."""
    if isinstance(value, str | bytes):
        return _model_of_text(model, value)
    return model.model_validate(value)  # PostgreSQL's parsed JSON (the store's pool)


@functools.lru_cache(maxsize=4096)
def _model_of_text(model: type[BaseModel], text: str | bytes) -> BaseModel:
    return model.model_validate(json.loads(text))


def _unreadable(hint: Any, value: Any) -> Any:
    raise TypeError(f"no column reader for {hint!r}; give the field to record_from")


def _same(value: Any) -> Any:
    return value


@functools.cache
def _plan(cls: Any) -> tuple[tuple[str, Read, Callable[[], Any] | None], ...]:
    """Each field of `cls`: its name, its reader, and its default (None: required)."""
    hints = typing.get_type_hints(cls)
    plan = []
    for f in dataclasses.fields(cls):
        default: Callable[[], Any] | None = None
        if f.default is not _MISSING:
            default = functools.partial(_same, f.default)
        elif f.default_factory is not _MISSING:
            default = f.default_factory
        plan.append((f.name, _reader(hints[f.name]), default))
    return tuple(plan)


def record_from(cls: type[R], row: Mapping[str, Any], **given: Any) -> R:
    """The record `cls` of a row, field by field, each from the column of its name.
    `given` fields are taken as they are. A field with a default that the row lacks
    (a computed column left out) or holds NULL for takes the default."""
    values = dict(given)
    for name, read, default in _plan(cast(Any, cls)):
        if name in values:
            continue
        value = row.get(name)
        values[name] = default() if value is None and default is not None else read(value)
    return cls(**values)


# -- writing -----------------------------------------------------------------------------
def json_doc(value: Any) -> Any:
    """A value as a JSON document holds it: Decimal as text, an enum as its value, a
    record by its to_json."""
    if isinstance(value, dict):
        return {k: json_doc(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_doc(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    to_json = getattr(value, "to_json", None)
    return value if to_json is None else to_json()


def column(d: Dialect, value: Any) -> Any:
    """A value as its column takes it, by its type."""
    if isinstance(value, enum.Enum):
        return value.value
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        return d.money(value)
    if isinstance(value, dt.datetime):
        return d.time(value)
    if isinstance(value, dt.date):
        return d.day(value)
    if isinstance(value, dict | list | tuple):
        return d.json(json_doc(value))
    raise TypeError(f"no column for a {type(value).__name__}")


def columns(d: Dialect, values: Mapping[str, Any]) -> list[Any]:
    return [column(d, v) for v in values.values()]


def fields_of(record: Any, *, skip: tuple[str, ...] = (), **given: Any) -> dict[str, Any]:
    """A record's fields by name (those in `skip` left out, `given` ones replaced): the
    columns of its row."""
    values = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)
              if f.name not in skip}
    return {**values, **given}


def names(cls: type) -> tuple[str, ...]:
    """The columns of a record type's row: its fields' names."""
    return tuple(f.name for f in dataclasses.fields(cls))


def insert(table: str, names: Mapping[str, Any] | tuple[str, ...], tail: str = "", *,
           rows: int = 1) -> str:
    """INSERT INTO table (names...) VALUES (%s, ...) and `tail` (ON CONFLICT, RETURNING);
    `rows` rows of values: their parameters one row after the other."""
    cols = list(names)
    values = ", ".join([f"({marks(len(cols))})"] * rows)
    return f"INSERT INTO {table} ({', '.join(cols)}) VALUES {values}" + (f" {tail}" if tail else "")


def marks(n: int) -> str:
    return ", ".join(["%s"] * n)
