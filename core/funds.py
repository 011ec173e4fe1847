"""The fund catalog: read from FUNDS_FILE (JSON list of {"name", "nav"}) or the demo list."""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from pathlib import Path

from core.domain import MAX_FUND_NAME
from core.models import Fund, write_txn

DEMO_FUNDS: list[tuple[str, Decimal]] = [
    ("Global Equity Fund", Decimal("10.00")),
    ("Emerging Markets Fund", Decimal("23.4567")),
    ("Sovereign Bond Fund", Decimal("101.25")),
    ("Money Market Fund", Decimal("1.0000")),
    ("Technology Growth Fund", Decimal("57.33")),
]


class FundsFileError(ValueError):
    """FUNDS_FILE is not a JSON list of {"name", "nav"} with valid values."""


def load_funds(path: Path | None) -> list[tuple[str, Decimal]]:
    """The catalog from a JSON file, or the demo catalog when path is None."""
    if path is None:
        return list(DEMO_FUNDS)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FundsFileError(f"FUNDS_FILE {path}: {exc}") from exc
    if not isinstance(data, list) or not data:
        raise FundsFileError(f"FUNDS_FILE {path}: must be a non-empty JSON list")
    funds: list[tuple[str, Decimal]] = []
    for i, item in enumerate(data):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise FundsFileError(f"FUNDS_FILE {path}: item {i} needs a string 'name'")
        name = item["name"]
        if not 1 <= len(name) <= MAX_FUND_NAME or any(ord(c) < 32 or ord(c) == 127 for c in name):
            raise FundsFileError(f"FUNDS_FILE {path}: item {i} has an invalid name")
        try:
            nav = Decimal(str(item.get("nav")))
        except InvalidOperation:
            raise FundsFileError(f"FUNDS_FILE {path}: item {i} nav is not a decimal") from None
        if not nav.is_finite() or nav <= 0:
            raise FundsFileError(f"FUNDS_FILE {path}: item {i} nav must be positive")
        funds.append((name, nav))
    return funds


def sync_funds(funds: list[tuple[str, Decimal]]) -> None:
    """Make the Fund table hold exactly this catalog."""
    with write_txn():
        names = [name for name, _ in funds]
        Fund.delete().where(Fund.name.not_in(names)).execute()
        for name, nav in funds:
            Fund.insert(name=name, nav=nav).on_conflict(
                conflict_target=[Fund.name], update={Fund.nav: nav}
            ).execute()


def list_funds() -> list[tuple[str, Decimal]]:
    """Every fund in the catalog, by name."""
    return [(f.name, Decimal(f.nav)) for f in Fund.select().order_by(Fund.name)]
