"""One table style for results, wherever they are shown: after ``chanformer fit``, after
``chanformer test`` / ``validate``, and in notebooks (rich renders the same table in Jupyter)."""

from __future__ import annotations

from collections.abc import Mapping

from rich.console import Console
from rich.table import Table

__all__ = ["print_results", "results_table"]


def results_table(metrics: Mapping[str, float], title: str = "results") -> Table:
    """A two-column table (metric, value) of ``metrics``, sorted by name, values to 4 decimals.

    Tensors and numpy scalars are accepted (anything ``float()`` takes).
    """
    table = Table("metric", "value", title=title, min_width=len(title) + 4)  # the title never wraps
    for key in sorted(metrics):
        table.add_row(key, f"{float(metrics[key]):.4f}")
    return table


def print_results(
    metrics: Mapping[str, float], title: str = "results", console: Console | None = None
) -> dict[str, float]:
    """Print :func:`results_table` and return the metrics as plain floats, e.g.
    ``print_results(trainer.test(task, datamodule=dm, verbose=False)[0], "test results")``."""
    (console or Console()).print(results_table(metrics, title))
    return {key: float(value) for key, value in metrics.items()}
