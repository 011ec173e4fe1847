"""How orderctl shows order updates: one line per update, and a live progress bar on a
terminal (rich), or one JSON object per line for scripts."""

from __future__ import annotations

from types import TracebackType
from typing import TextIO

from google.protobuf import json_format
from orders.v1 import orders_pb2 as pb
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn


def describe_update(update: pb.WatchOrderResponse) -> str:
    """sequence, time, event, status, progress and detail of one update, on one line."""
    when = update.recorded_on.ToDatetime().isoformat(timespec="milliseconds")
    status = pb.OrderStatus.Name(update.order.status).removeprefix("ORDER_STATUS_")
    return (
        f"{update.sequence:>3} {when}Z {update.event:<16} {status:<10} {update.progress:>3}% "
        f"{update.detail}"
    )


class WatchDisplay:
    """Shows each update once: a line (or a JSON object) per update, under a live bar."""

    def __init__(self, ref: str, out: TextIO, as_json: bool = False) -> None:
        self.ref = ref
        self.out = out
        self.as_json = as_json
        self.console = Console(file=out, highlight=False, soft_wrap=True)
        self.progress: Progress | None = None
        self.task: TaskID | None = None

    def __enter__(self) -> WatchDisplay:
        # The bar only where someone looks at it: not in --json, not into a pipe or a file.
        if not self.as_json and self.console.is_terminal:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                console=self.console,
            )
            self.task = self.progress.add_task(self.ref, total=100)
            self.progress.start()
        return self

    def show(self, update: pb.WatchOrderResponse) -> None:
        """Print one update and move the bar."""
        if self.as_json:
            text = json_format.MessageToJson(
                update, always_print_fields_with_no_presence=True, indent=None
            )
            print(text, file=self.out, flush=True)
            return
        line = describe_update(update)
        if self.progress is None or self.task is None:
            print(line, file=self.out, flush=True)
            return
        status = pb.OrderStatus.Name(update.order.status).removeprefix("ORDER_STATUS_")
        self.progress.console.print(line, markup=False)
        self.progress.update(
            self.task, completed=update.progress, description=f"{self.ref} {status}"
        )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.progress is not None:
            self.progress.stop()
