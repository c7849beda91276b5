"""PostgreSQL batch transactions: the writes nobody waits for (`later`) go out with the
next statement or the COMMIT; those in a row on different tables as one statement."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from core.store import open_store
from core.store.postgres import PostgresStore
from tests.factories import make_run


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[PostgresStore]:
    store = open_store(postgres_url, pool_size=1)
    assert isinstance(store, PostgresStore)
    yield store
    store.close()


def _sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The statements psycopg is asked to run from now on."""
    sent: list[str] = []
    execute = psycopg.Cursor.execute

    def spy(self: psycopg.Cursor[Any], query: Any, *args: Any, **kw: Any) -> Any:
        sent.append(str(query))
        return execute(self, query, *args, **kw)

    monkeypatch.setattr(psycopg.Cursor, "execute", spy)
    return sent


def _writes(sent: list[str]) -> list[str]:
    """The statements sent but BEGIN, COMMIT and the reads."""
    return [s for s in sent if s not in ("BEGIN", "COMMIT") and not s.startswith("SELECT")]


def test_later_writes_on_different_tables_go_as_one_and_one_rows_changes_in_order(
        pg_store: PostgresStore, monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run(pg_store, cash=Decimal("100"))
    sent = _sent(monkeypatch)
    with pg_store._tx(write=True, batch=True) as cur:
        cur.later("UPDATE portfolios SET cash = cash + 1 WHERE run_id = %s", (run.id,))
        cur.later("UPDATE runs SET status_reason = %s WHERE id = %s", ("first", run.id))
        cur.later("UPDATE portfolios SET cash = cash * 2 WHERE run_id = %s", (run.id,))
        cur.later("UPDATE runs SET status_reason = status_reason || %s WHERE id = %s",
                  (" then second", run.id))
        # A read sends what is kept first, and sees it.
        assert cur.one("SELECT cash FROM portfolios WHERE run_id = %s",
                       (run.id,)) == {"cash": Decimal("202")}
        cur.later("INSERT INTO order_events (order_id, step, kind, bar_time, run_id)"
                  " SELECT NULL, 0, 'placed', now(), %s WHERE FALSE", (run.id,))
        cur.later("UPDATE portfolios SET holdings = %s WHERE run_id = %s",
                  ('{"AAPL": "3"}', run.id))
    # Two statements for the four writes before the read (a table's second write waits
    # for the next), one for the two after it; BEGIN, the read and COMMIT besides.
    writes = _writes(sent)
    assert len(writes) == 3, writes
    assert writes[0].startswith("WITH w0 AS (UPDATE portfolios")
    portfolio = pg_store.get_portfolio(run.id)
    assert portfolio.cash == Decimal("202")  # (100 + 1) * 2: in the order asked
    assert portfolio.holdings == {"AAPL": Decimal("3")}
    assert pg_store.get_run(run.id).status_reason == "first then second"


def test_a_later_write_that_fails_rolls_the_batch_back(pg_store: PostgresStore) -> None:
    run = make_run(pg_store, cash=Decimal("100"))
    with pytest.raises(psycopg.errors.NotNullViolation), \
            pg_store._tx(write=True, batch=True) as cur:
        cur.later("UPDATE portfolios SET cash = 0 WHERE run_id = %s", (run.id,))
        cur.later("UPDATE runs SET user_id = NULL WHERE id = %s", (run.id,))
    assert pg_store.get_portfolio(run.id).cash == Decimal("100")
    assert pg_store.get_run(run.id).user_id == "user-a"


def test_a_later_write_that_is_not_an_insert_or_update_goes_alone(
        pg_store: PostgresStore, monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run(pg_store, cash=Decimal("100"))
    sent = _sent(monkeypatch)
    with pg_store._tx(write=True, batch=True) as cur:
        cur.later("UPDATE portfolios SET cash = cash + 1 WHERE run_id = %s", (run.id,))
        cur.later("DELETE FROM order_events WHERE run_id = %s", (run.id,))
        cur.later("UPDATE runs SET status_reason = %s WHERE id = %s", ("after", run.id))
    writes = _writes(sent)
    assert [w.split(" ")[0] for w in writes] == ["UPDATE", "DELETE", "UPDATE"], writes
    assert pg_store.get_portfolio(run.id).cash == Decimal("101")
    assert pg_store.get_run(run.id).status_reason == "after"
