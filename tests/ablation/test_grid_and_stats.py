"""The grid's checks and the report's statistics (pure parts of mghkit.ablation)."""

from __future__ import annotations

import math

import pytest

from mghkit.ablation.grid import Grid
from mghkit.ablation.report import build_report
from mghkit.ablation.stats import paired, summary, t975
from mghkit.errors import UsageError


def test_cells_cover_the_cross_product_with_distinct_run_dirs():
    g = Grid.parse(schedules="coarse-to-fine,fixed:high,all", poolings="mean,ata", seeds=3)
    cells = g.cells()
    assert len(cells) == 3 * 2 * 3
    assert len({c.name for c in cells}) == len(cells)
    assert all(":" not in c.name for c in cells)  # a fixed:LEVEL schedule makes a portable dir name
    assert g.rows()[:2] == ["base / mean", "base / ata"]


def test_default_grid_is_every_schedule_and_pooling():
    g = Grid.parse()
    assert "all" in g.schedules and "fixed:low" in g.schedules
    assert set(g.poolings) == {"mean", "last", "weighted-mean", "ata"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"schedules": "hard-first"}, "unknown schedule 'hard-first'"),
        ({"poolings": "max"}, "unknown pooling 'max'"),
        ({"poolings": "mean,mean"}, "given twice"),
        ({"schedules": " , "}, "expected at least one schedule"),
        ({"seeds": 0}, "--seeds 0"),
    ],
)
def test_bad_grid_options(kwargs, message):
    with pytest.raises(UsageError, match=message):
        Grid.parse(**kwargs)


def test_max_cells():
    g = Grid.parse(schedules="coarse-to-fine,random", poolings="mean,last", seeds=2)
    g.check_size(8)
    with pytest.raises(UsageError, match=r"8 cells .* more than --max-cells 7"):
        g.check_size(7)


def test_interval_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    values = [0.61, 0.64, 0.58, 0.66, 0.60]
    s = summary(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=s.mean, scale=stats.sem(values))
    assert math.isclose(s.low, low, abs_tol=1e-4) and math.isclose(s.high, high, abs_tol=1e-4)
    assert t975(4) == pytest.approx(stats.t.ppf(0.975, 4), abs=1e-3)


def test_paired_difference_cancels_the_seed_effect():
    a = [0.50, 0.70, 0.60]  # large seed-to-seed spread...
    b = [0.49, 0.69, 0.59]  # ...shared by b: the paired difference is exact
    assert summary(a).verdict() == "higher"  # (a mean above 0, as a sanity check of verdict())
    d = paired(a, b)
    assert d.mean == pytest.approx(0.01) and d.half == pytest.approx(0.0, abs=1e-12)
    assert d.verdict() == "higher"
    assert summary([1.0]).half is None and summary([1.0]).verdict() == "one seed"


def test_report_orders_rows_and_judges_claims():
    g = Grid.parse(schedules="coarse-to-fine,random,fine-to-coarse", poolings="mean,ata", seeds=3)
    c2f_ata, c2f_mean = [0.70, 0.72, 0.71], [0.60, 0.62, 0.61]
    scores = {
        "base / mean": {"m": {None: 0.55}},
        "base / ata": {"m": {None: 0.50}},
        "coarse-to-fine / mean": {"m": dict(enumerate(c2f_mean))},
        "coarse-to-fine / ata": {"m": dict(enumerate(c2f_ata))},
        "random / mean": {"m": dict(enumerate([0.61, 0.60, 0.63]))},  # within noise of c2f
        "random / ata": {"m": dict(enumerate([0.60, 0.61, 0.62]))},  # clearly below
        "fine-to-coarse / mean": {"m": dict(enumerate([0.65, 0.67, 0.66]))},  # clearly above: reversed
        "fine-to-coarse / ata": {"m": dict(enumerate([0.69, 0.72, 0.70]))},
    }
    r = build_report(g, scores)
    verdicts = {c["claim"]: c["verdict"] for c in r.claims}
    assert verdicts["coarse-to-fine beats random (mean pooling)"] == "within noise"
    assert verdicts["coarse-to-fine beats random (ata pooling)"] == "holds"
    assert verdicts["coarse-to-fine beats fine-to-coarse (mean pooling)"] == "reversed"
    assert verdicts["ata beats mean pooling (coarse-to-fine)"] == "holds"
    assert verdicts["training lifts the base (ata pooling)"] == "holds"
    assert r.ordering["m"][0] == "coarse-to-fine / ata"
    row = next(x for x in r.rows if x["row"] == "random / ata")
    assert row["metrics"]["m"]["diff"]["mean"] == pytest.approx(-0.1)
    md = r.markdown()
    assert "| coarse-to-fine / ata | 0.7100 +- " in md and "(reference)" in md
