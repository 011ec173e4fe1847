"""Hot-path SQL for the order writes, built once per shape from the models' metadata.

Profiling showed peewee's query builder costing more than the statements themselves (about
70% of a state change's CPU). The text is cached per shape and database; values still go
through each field's db_value, exactly as peewee would pass them.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import peewee as pw

from core.models import IdempotencyKey, Order, OrderEvent, db

_cache: dict[tuple[Any, ...], str] = {}
#: Statement texts kept. Shapes vary with the batch size and, for placements, with how many
#: orders of a batch carry an idempotency key: thousands of possible texts of up to ~15 kB.
#: Past this many the oldest is dropped (the common shapes are built again at once).
CACHE_LIMIT = 1024
_cache_lock = threading.Lock()

_ORDER_TABLE = f'"{Order._meta.table_name}"'
_EVENT_TABLE = f'"{OrderEvent._meta.table_name}"'
_KEY_TABLE = f'"{IdempotencyKey._meta.table_name}"'
_ORDER_FIELDS = list(Order._meta.sorted_fields)
_ORDER_COLUMNS = [f.column_name for f in _ORDER_FIELDS]
_EVENT_FIELDS = [f for f in OrderEvent._meta.sorted_fields if f.name != "id"]


def _param() -> str:
    return str(db.obj.param)


def _sqlite() -> bool:
    return isinstance(db.obj, pw.SqliteDatabase)


def _sql(key: tuple[Any, ...], build: Any) -> str:
    full = (*key, _param(), _sqlite())
    text = _cache.get(full)
    if text is None:
        text = build()
        with _cache_lock:  # the database threads share the cache
            while len(_cache) >= CACHE_LIMIT:
                del _cache[next(iter(_cache))]
            _cache[full] = text
    return text


def select_order(ref: str, statuses: Sequence[str], owner: str | None) -> Order | None:
    """The order with ref whose status is one of statuses (and worker_id is owner), locked."""
    p = _param()

    def build() -> str:
        cols = ", ".join(f'"{c}"' for c in _ORDER_COLUMNS)
        text = (
            f'SELECT {cols} FROM {_ORDER_TABLE} WHERE "ref" = {p} AND "status" IN '
            f"({', '.join([p] * len(statuses))})"
        )
        if owner is not None:
            text += f' AND "worker_id" = {p}'
        # SQLite has no row locks; its IMMEDIATE transactions already serialise writers.
        return text + ("" if _sqlite() else " FOR UPDATE")

    text = _sql(("select", len(statuses), owner is not None), build)
    params: list[Any] = [ref, *statuses] + ([owner] if owner is not None else [])
    row = db.execute_sql(text, params).fetchone()
    return None if row is None else _order_of(row)


def _order_of(row: Sequence[Any]) -> Order:
    # What Order.raw() would build, without its per-call column resolution (10% of a claim).
    # Callers write back with update_order() or update_held(), never save().
    return Order(
        __no_default__=1,
        **{f.name: f.python_value(value) for f, value in zip(_ORDER_FIELDS, row, strict=True)},
    )


def claim_orders(
    refs: Sequence[str],
    values: dict[str, Any],
    progress: int,
    from_status: str,
) -> list[Order]:
    """Set `values` on the orders of refs whose status is from_status, in one statement.

    Each claimed row also gets last_sequence + 1 and progress raised to at least `progress`.
    Returns the claimed rows as they are after the update (in no particular order); a ref
    in another status is left alone and not returned: the compare-and-set.
    """
    names = tuple(sorted(values))
    p = _param()
    fields = Order._meta.fields
    greatest = "MAX" if _sqlite() else "GREATEST"

    def build() -> str:
        sets = [f'"{fields[n].column_name}" = {p}' for n in names]
        sets += [
            '"last_sequence" = "last_sequence" + 1',
            f'"progress" = {greatest}("progress", {p})',
        ]
        cols = ", ".join(f'"{c}"' for c in _ORDER_COLUMNS)
        # Unary + keeps SQLite's planner off the status index: without statistics it would
        # scan every PENDING order instead of looking the refs up.
        status = '+"status"' if _sqlite() else '"status"'
        return (
            f"UPDATE {_ORDER_TABLE} SET {', '.join(sets)} "
            f'WHERE "ref" IN ({", ".join([p] * len(refs))}) AND {status} = {p} RETURNING {cols}'
        )

    text = _sql(("claim", names, len(refs)), build)
    params = [fields[n].db_value(values[n]) for n in names] + [progress, *refs, from_status]
    return [_order_of(row) for row in db.execute_sql(text, params).fetchall()]


def update_held(
    order_id: int, values: dict[str, Any], status: str, owner: str, last_sequence: int
) -> bool:
    """UPDATE the named fields of an order still in `status`, held by owner, unchanged since
    last_sequence; False when it is not (another writer took it over)."""
    names = tuple(sorted(values))
    p = _param()
    fields = Order._meta.fields

    def build() -> str:
        sets = ", ".join(f'"{fields[n].column_name}" = {p}' for n in names)
        return (
            f'UPDATE {_ORDER_TABLE} SET {sets} WHERE "id" = {p} AND "status" = {p} '
            f'AND "worker_id" = {p} AND "last_sequence" = {p}'
        )

    text = _sql(("update_held", names), build)
    params = [fields[n].db_value(values[n]) for n in names]
    cursor = db.execute_sql(text, [*params, order_id, status, owner, last_sequence])
    return bool(cursor.rowcount == 1)


def update_order(order_id: int, values: dict[str, Any]) -> None:
    """UPDATE the named fields of one order row."""
    names = tuple(sorted(values))
    p = _param()
    fields = Order._meta.fields

    def build() -> str:
        sets = ", ".join(f'"{fields[n].column_name}" = {p}' for n in names)
        return f'UPDATE {_ORDER_TABLE} SET {sets} WHERE "id" = {p}'

    text = _sql(("update", names), build)
    db.execute_sql(text, [fields[n].db_value(values[n]) for n in names] + [order_id])


_NEW_ORDER_FIELDS = [f for f in _ORDER_FIELDS if f.name != "id"]


def insert_orders(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """INSERT order rows (dicts with every field but id) in one statement: {ref: id}."""
    p = _param()

    def build() -> str:
        cols = ", ".join(f'"{f.column_name}"' for f in _NEW_ORDER_FIELDS)
        one = f"({', '.join([p] * len(_NEW_ORDER_FIELDS))})"
        return (
            f"INSERT INTO {_ORDER_TABLE} ({cols}) VALUES {', '.join([one] * len(rows))} "
            'RETURNING "id", "ref"'
        )

    text = _sql(("insert_orders", len(rows)), build)
    params: list[Any] = []
    for row in rows:
        params.extend(f.db_value(row[f.name]) for f in _NEW_ORDER_FIELDS)
    # Rows come back in no promised order: matched by ref (unique).
    return {ref: int(order_id) for order_id, ref in db.execute_sql(text, params).fetchall()}


def insert_events(rows: Sequence[dict[str, Any]]) -> None:
    """INSERT OrderEvent rows (dicts keyed by field name, "order" holding the order id)."""
    p = _param()

    def build() -> str:
        cols = ", ".join(f'"{f.column_name}"' for f in _EVENT_FIELDS)
        one = f"({', '.join([p] * len(_EVENT_FIELDS))})"
        return f"INSERT INTO {_EVENT_TABLE} ({cols}) VALUES {', '.join([one] * len(rows))}"

    text = _sql(("insert_events", len(rows)), build)
    params: list[Any] = []
    for row in rows:
        params.extend(
            row["order"] if f.name == "order" else f.db_value(row[f.name]) for f in _EVENT_FIELDS
        )
    db.execute_sql(text, params)


_KEY_FIELDS = [f for f in IdempotencyKey._meta.sorted_fields if f.name not in ("id", "order")]


def one_statement_placements() -> bool:
    """True where insert_placements can write a batch in one statement (PostgreSQL)."""
    return not _sqlite()


def insert_placements(
    rows: Sequence[dict[str, Any]],
    events: Sequence[dict[str, Any]],
    keys: Sequence[dict[str, Any]],
) -> None:
    """PostgreSQL: INSERT orders, their events and idempotency keys in one statement.

    Outside a transaction the statement is its own (autocommit), so a batch costs one round
    trip instead of BEGIN, one per INSERT and COMMIT; it is atomic either way, and a taken
    idempotency key fails the whole statement (IntegrityError), writing nothing. Events and
    keys name their order by "ref" (the order ids come from the orders' RETURNING).
    """
    p = _param()
    event_fields = [f for f in _EVENT_FIELDS if f.name != "order"]

    def joined(table: str, fields: list[Any], count: int) -> str:
        # VALUES columns take their types from the first row; psycopg2 sends plain literals.
        first = ", ".join([p] + [f"{p}::{_pg_type(f)}" for f in fields])
        rest = f"({', '.join([p] * (len(fields) + 1))})"
        values = ", ".join([f"({first})"] + [rest] * (count - 1))
        names = ", ".join(f'"{f.column_name}"' for f in fields)
        aliases = [f"c{i}" for i in range(len(fields))]
        return (
            f'INSERT INTO {table} ("order_id", {names}) '
            f'SELECT o."id", {", ".join(f"v.{a}" for a in aliases)} FROM o '
            f'JOIN (VALUES {values}) AS v(ref, {", ".join(aliases)}) ON v.ref = o."ref"'
        )

    def build() -> str:
        cols = ", ".join(f'"{f.column_name}"' for f in _NEW_ORDER_FIELDS)
        one = f"({', '.join([p] * len(_NEW_ORDER_FIELDS))})"
        text = (
            f"WITH o AS (INSERT INTO {_ORDER_TABLE} ({cols}) VALUES "
            f'{", ".join([one] * len(rows))} RETURNING "id", "ref")'
        )
        if keys:
            text += f", k AS ({joined(_KEY_TABLE, _KEY_FIELDS, len(keys))})"
        return f"{text} {joined(_EVENT_TABLE, event_fields, len(events))}"

    text = _sql(("placements", len(rows), len(events), len(keys)), build)
    params: list[Any] = []
    for row in rows:
        params.extend(f.db_value(row[f.name]) for f in _NEW_ORDER_FIELDS)
    for key in keys:
        params.append(key["ref"])
        params.extend(f.db_value(key[f.name]) for f in _KEY_FIELDS)
    for event in events:
        params.append(event["ref"])
        params.extend(f.db_value(event[f.name]) for f in event_fields)
    db.execute_sql(text, params)


#: PostgreSQL types for the VALUES columns of insert_placements, by peewee field type.
_PG_TYPES = {
    "VARCHAR": "text",
    "TEXT": "text",
    "INT": "integer",
    "SMALLINT": "smallint",
    "BIGINT": "bigint",
    "BOOL": "boolean",
    "DATETIME": "timestamp",
}


def _pg_type(field: pw.Field) -> str:
    return _PG_TYPES[field.field_type]
