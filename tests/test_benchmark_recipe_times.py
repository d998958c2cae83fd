"""The recipe timer (benchmarks/recipe_times.py): what it refuses to start, and how it reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.recipe_times import FIRST, RECIPES, RecipeTime, main, missing_data_root, table, time_recipe


def test_a_recipe_whose_public_data_is_absent_is_not_started(tmp_path: Path) -> None:
    assert missing_data_root("eurosat-channelvit") == "data/EuroSAT"
    row = time_recipe("eurosat-channelvit", tmp_path / "run", threads=1, timeout=5)
    assert row.status == "needs data" and row.wall_s is None and "data/EuroSAT" in row.tail[0]
    assert not (tmp_path / "run").exists()
    assert missing_data_root("basicmotions-softs") is None  # data ships in a package, no root


def test_every_two_step_recipe_names_a_shipped_first_step() -> None:
    shipped = {p.stem for p in RECIPES.glob("*.yaml")}
    for recipe, (first, arg) in FIRST.items():
        assert recipe in shipped and first in shipped and arg.startswith("--")


def test_table_shows_times_only_for_finished_fits() -> None:
    rows = [RecipeTime("a", "ok", 12.4, 20.6, 1.5), RecipeTime("b", "needs data"), RecipeTime("c", "ok", 3.0, 3.0, 0.5, 7.2)]
    text = table(rows, threads=2).splitlines()
    assert text[0].startswith("| recipe | outcome | wall s (2 threads)")
    assert text[2] == "| `a` | ok | 12 | 21 | 1.5 |  |"
    assert text[3] == "| `b` | needs data | - | - | - |  |"
    assert text[4].endswith("| 7 |")


def test_unknown_recipe_is_refused() -> None:
    with pytest.raises(SystemExit):
        main(["--recipes", "no-such-recipe"])
