"""The writes of a run's status and its reason, for core.lifecycle alone.

Every status change is followed by what the lifecycle does with it (its `status` event,
the result, the workload's deletion), so these writes are kept off the Store interface:
only a module that imports this one can make them, and an import-linter contract
(pyproject.toml) lets no module but core.lifecycle import it. The state machine
(core.status) and the runner's fencing (its attempt) are enforced here, in the
transaction of the change; admission is chosen by core.admission in its transaction.
"""

from __future__ import annotations

from collections.abc import Collection
from decimal import Decimal
from typing import Any, cast

from core import admission
from core.errors import IllegalTransition, NotFound
from core.records import OrderEventKind, Run
from core.spend import SPEND_WAIT_PREFIX, DailyLimit, over_daily_limit
from core.status import RunStatus, can_transition
from core.store import codec
from core.store.base import Store
from core.store.ledger import require_attempt
from core.store.spend import daily_limits, spend_by_user
from core.store.sqlbase import Cursor, SqlAccess, utcnow

ADMIT_CHUNK = 500  # ids per UPDATE: under SQLite's and PostgreSQL's parameter limits


class RunStatusWrites:
    """A store's status writes: built by the lifecycle from the store it was given."""

    def __init__(self, store: Store) -> None:
        # Every Store is a SqlStore (PostgreSQL, SQLite), or a test's proxy of one that
        # hands on its attributes: its transactions and dialect are what is used here.
        self._db = cast(SqlAccess, store)

    def transition(self, run_id: int, target: RunStatus, *, reason: str | None = None,
                   result: dict[str, Any] | None = None, attempt: int | None = None) -> Run:
        """Move a run to `target` if the state machine allows it (IllegalTransition).

        `attempt` fences a runner's writes (here and in ledger_tx, record_decision and
        complete_step): when the run's attempts moved past it, a newer runner owns the
        run and the write is refused with Superseded, changing nothing."""
        d = self._db.dialect
        with self._db._tx(write=True) as cur:
            row = cur.one(f"SELECT * FROM runs WHERE id = %s{d.for_update}", (run_id,))
            if row is None:
                raise NotFound(f"run {run_id} not found")
            require_attempt(run_id, row, attempt)
            current = RunStatus(row["status"])
            if not can_transition(current, target):
                raise IllegalTransition(run_id, current.value, target.value)
            now = d.time(utcnow())
            sets = ["status = %s", "status_reason = COALESCE(%s, status_reason)"]
            params: list[Any] = [target.value, reason]
            if result is not None:
                sets.append("result = %s")
                params.append(d.json(result))
            if target is RunStatus.ADMITTED:
                sets.append("admitted_at = %s")
                params.append(now)
            if target is RunStatus.STOPPING:
                sets.append("stop_requested_at = COALESCE(stop_requested_at, %s)")
                params.append(now)
            if target.is_terminal:
                sets.append("finished_at = %s")
                params.append(now)
                self._end_open_orders(cur, run_id, int(row["steps_done"]),
                                      f"the run ended ({target.value})")
            updated = cur.one(f"UPDATE runs SET {', '.join(sets)} WHERE id = %s RETURNING *",
                              (*params, run_id))
        assert updated is not None
        return codec.record_from(Run, updated)

    def start_attempt(self, run_id: int, *, decider: str | None = None,
                      decider_reason: str | None = None) -> Run:
        """The runner takes the run: running, attempts + 1, started_at kept from the first;
        with `decider`, the decider it resolved and why (None: the one the model names)."""
        d = self._db.dialect
        with self._db._tx(write=True) as cur:
            row = cur.one(f"SELECT status FROM runs WHERE id = %s{d.for_update}", (run_id,))
            if row is None:
                raise NotFound(f"run {run_id} not found")
            current = RunStatus(row["status"])
            if current is not RunStatus.STOPPING and not can_transition(
                current, RunStatus.RUNNING
            ):
                raise IllegalTransition(run_id, current.value, RunStatus.RUNNING.value)
            # A runner started on a run that is being stopped keeps `stopping`: it will
            # save at once and end as stopped.
            target = current if current is RunStatus.STOPPING else RunStatus.RUNNING
            updated = cur.one(
                "UPDATE runs SET status = %s, attempts = attempts + 1,"
                " started_at = COALESCE(started_at, %s),"
                " admitted_at = COALESCE(admitted_at, %s), decider = COALESCE(%s, decider)"
                + (", decider_reason = %s" if decider is not None else "")
                + " WHERE id = %s RETURNING *",
                (target.value, d.time(utcnow()), d.time(utcnow()), decider,
                 *((decider_reason,) if decider is not None else ()), run_id),
            )
        assert updated is not None
        return codec.record_from(Run, updated)

    def note_status(self, run_id: int, status: RunStatus, reason: str | None) -> None:
        """Say what a run in `status` is doing or waiting for (a quota's refusal, data
        being fetched), visible in the run; a run no longer in `status` is left as it
        is."""
        with self._db._tx(write=True) as cur:
            cur.run("UPDATE runs SET status_reason = %s WHERE id = %s AND status = %s",
                    (reason, run_id, status.value))

    def admit_queued(self, per_user_limit: int, global_limit: int, *,
                     skip: Collection[int] = (), spend: DailyLimit | None = None
                     ) -> list[Run]:
        """Admit queued runs oldest first within the limits, in one transaction; runs in
        `skip` (no workload yet) wait without holding up those behind them. With `spend`,
        a user whose LLM spend on its day reached their daily limit (their own, else its
        default) has their queued runs wait, each saying why in its status reason."""
        d = self._db.dialect
        with self._db._tx(write=True) as cur:
            d.lock_admission(cur)
            active = cur.all(
                "SELECT user_id, COUNT(*) AS n FROM runs WHERE status IN (%s, %s, %s)"
                " GROUP BY user_id",
                [s.value for s in (RunStatus.ADMITTED, RunStatus.RUNNING, RunStatus.STOPPING)],
            )
            per_user = {r["user_id"]: int(r["n"]) for r in active}
            queued = cur.all(
                "SELECT r.id, r.user_id, r.spec, m.llm FROM runs r"
                " JOIN models m ON m.id = r.model_id"
                " WHERE r.status = 'queued' ORDER BY r.created_at, r.id"
            )
            held = self._hold_for_spend(
                cur, {int(r["id"]): r["user_id"] for r in queued if _may_spend(r)}, spend)
            chosen = admission.choose(
                [admission.Queued(int(r["id"]), r["user_id"]) for r in queued], per_user,
                per_user_limit=per_user_limit, global_limit=global_limit,
                excluded={*skip, *held})
            rows: dict[int, codec.Row] = {}
            now = d.time(utcnow())
            # A statement per chunk, not per run: a burst of 1,000 admissions was 1,000
            # round trips before its first workload could start.
            for start in range(0, len(chosen), ADMIT_CHUNK):
                chunk = chosen[start:start + ADMIT_CHUNK]
                for row in cur.all(
                        "UPDATE runs SET status = 'admitted', admitted_at = %s,"
                        " status_reason = NULL WHERE status = 'queued'"
                        f" AND id IN ({codec.marks(len(chunk))}) RETURNING *", (now, *chunk)):
                    rows[int(row["id"])] = row
        return [codec.record_from(Run, rows[i]) for i in chosen if i in rows]  # oldest first

    def _hold_for_spend(self, cur: Cursor, spending: dict[int, str],
                        spend: DailyLimit | None) -> set[int]:
        """The queued runs that may call an LLM (`spending`: run id -> user) and whose
        user's spend of the day reached their limit: they wait and say why; a spend
        reason that no longer holds goes. Returns the ids of the runs held."""
        held: set[int] = set()
        if spend is not None and spending:
            users = set(spending.values())
            own = daily_limits(cur, users)
            limits = {u: own.get(u, spend.default_usd) for u in users}
            limited = {u for u, limit in limits.items() if limit is not None}
            spent = (spend_by_user(cur, self._db.dialect, limited, *spend.window)
                     if limited else {})
            for user in sorted(limited):
                limit, used = limits[user], spent.get(user, Decimal(0))
                if limit is None or used < limit:
                    continue
                runs = sorted(i for i, u in spending.items() if u == user)
                held.update(runs)
                reason = over_daily_limit(used, limit, spend.day)
                cur.run("UPDATE runs SET status_reason = %s WHERE status = 'queued'"
                        f" AND id IN ({codec.marks(len(runs))})"
                        " AND (status_reason IS NULL OR status_reason <> %s)",
                        (reason, *runs, reason))
        # One statement for every other run: a spend reason that no longer holds goes.
        cur.run("UPDATE runs SET status_reason = NULL WHERE status = 'queued'"
                " AND status_reason LIKE %s"
                + (f" AND id NOT IN ({codec.marks(len(held))})" if held else ""),
                (SPEND_WAIT_PREFIX + "%", *sorted(held)))
        return held

    def _end_open_orders(self, cur: Cursor, run_id: int, step: int, reason: str) -> None:
        """A final run has no open order: what a runner did not end itself (a run stopped
        or failed mid-way, or finalized from its ledger) is cancelled with the status
        change, each with its event."""
        d = self._db.dialect
        rows = cur.all("UPDATE orders SET state = 'cancelled', reason = %s, updated_at = %s"
                       " WHERE run_id = %s AND state = 'open' RETURNING id",
                       (reason, d.time(utcnow()), run_id))
        if rows:
            cur.many("INSERT INTO order_events (run_id, order_id, step, kind, bar_time, price,"
                     " reason, created_at) VALUES (%s, %s, %s, %s, NULL, NULL, %s, %s)",
                     [(run_id, r["id"], step, OrderEventKind.CANCELLED.value, reason,
                       d.time(utcnow())) for r in sorted(rows, key=lambda r: int(r["id"]))])


def _may_spend(row: codec.Row) -> bool:
    """A queued run that may call an LLM: its spec asks for one, or leaves the decider
    to its model, which names one."""
    decider = (codec.js(row["spec"]) or {}).get("decider")
    return decider == "llm" or (decider is None and bool(row["llm"]))
