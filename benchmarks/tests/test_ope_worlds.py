"""``bench ope --worlds``: the options, the band chosen on one world, the coverage's interval."""

from __future__ import annotations

import argparse

import pytest
from vanco_bench.ope.options import add_arguments
from vanco_bench.ope.worlds import (
    BAND_GRID,
    OPE_WORLDS,
    WorldsSettings,
    choose_band,
    coverage_ci,
    worlds_options,
)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_the_worlds_options_are_checked_before_any_work():
    opts = worlds_options(_args("--worlds", "icu", "icu_goti", "icu_sepsis_volume"))
    assert opts.calibrate_on == "icu" and opts.held_out == ("icu_goti", "icu_sepsis_volume")
    assert opts.bands == BAND_GRID and opts.estimators == ("wis", "wdr")
    assert worlds_options(_args("--worlds", "icu", "icu_goti", "--estimators")).estimators == ()
    assert worlds_options(_args()) is None
    for argv, match in (
        (("--worlds", "icu", "mars"), "unknown world"),
        (("--worlds", "icu_goti", "icu_iov0"), "--calibrate-on icu must be one of"),
        (("--worlds", "icu"), "at least one held-out world"),
        (("--worlds", "icu", "icu", "icu_goti"), "twice"),
        (("--worlds", "icu", "icu_goti", "--bands", "-1"), "--bands"),
        (("--worlds", "icu", "icu_goti", "--estimators", "twin"), "--estimators"),
        (("--estimators", "wis"), "only apply with --worlds"),
    ):
        with pytest.raises(ValueError, match=match):
            worlds_options(_args(*argv))
    # The world the twin does not model is on offer, beside the panel.
    assert OPE_WORLDS["icu_sepsis_volume"].sepsis_v1_excess > 0
    with pytest.raises(ValueError, match="calibrate"):
        WorldsSettings(worlds=("icu", "icu_goti"), calibrate_on="icu_iov0")


def _scores(value: float, attainment: float, diff: float) -> dict:
    return {
        "value": {"coverage": value},
        "attainment": {"coverage": attainment},
        "diff value": {"coverage": diff},
    }


def test_the_band_is_the_narrowest_covering_the_calibration_world_in_every_metric():
    scores = {0.0: _scores(0.6, 1.0, 1.0), 0.5: _scores(0.95, 0.85, 1.0), 1.0: _scores(0.9, 0.95, 0.92)}
    assert choose_band(scores) == 1.0
    assert choose_band(scores, at=0.8) == 0.5
    assert choose_band({0.0: _scores(0.1, 0.1, 0.1), 2.0: _scores(0.5, 0.5, 0.5)}) == 2.0


def test_the_coverage_interval_is_the_exact_binomial_one():
    low, high = coverage_ci(13, 14)
    assert (round(low, 2), high) == (0.66, pytest.approx(0.998, abs=1e-3))
    assert coverage_ci(14, 14)[1] == 1.0
