"""Small dosing-table builders (numpy, seeded) and hypothesis strategies for the data tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import strategies as st
from vanco_pk.targets import COVARIATES, DOSE_GRID_MG, FEATURES


def make_table(
    n_stays: int = 4,
    rows: tuple[int, int] = (2, 6),
    seed: int = 0,
    *,
    time: str = "step",
    terminal_fraction: float = 0.0,
    never_measured: bool = False,
    covariates: bool = False,
    reward: bool = False,
    behavior_prob: bool = False,
    grid_doses: bool = False,
    stay_prefix: str | None = None,
) -> pd.DataFrame:
    """A valid table: ``n_stays`` contiguous stays of ``rows[0]..rows[1]`` rows each.

    ``never_measured`` leaves the first rows of some stays without a vancomycin level.
    ``terminal_fraction`` of stays get ``done=True`` on their last row (with a ``done``
    column present whenever it is > 0). ``reward`` adds a reward column, empty on the last
    row of every stay except terminal ones.
    """
    rng = np.random.default_rng(seed)
    lengths = rng.integers(rows[0], rows[1] + 1, size=n_stays)
    n = int(lengths.sum())
    codes = np.repeat(np.arange(n_stays), lengths)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    position = np.arange(n) - starts[codes]
    last = position == lengths[codes] - 1
    ids = np.arange(100, 100 + n_stays)
    table = pd.DataFrame(
        {"stay_id": ids[codes] if stay_prefix is None else [f"{stay_prefix}{i}" for i in ids[codes]]}
    )
    if time == "step":
        table["step"] = position * rng.integers(1, 3)
    else:
        table["time_h"] = position * 12.0 + rng.uniform(0, 2, size=n).round(2) + 0.5 * position
    table["vanco_level"] = rng.uniform(3.0, 35.0, size=n).round(2)
    if never_measured:
        first = rng.integers(0, 3, size=n_stays)
        table.loc[position < first[codes], "vanco_level"] = np.nan
    table["creatinine"] = rng.uniform(0.4, 4.0, size=n).round(3)
    table["wbc"] = rng.uniform(2.0, 25.0, size=n).round(2)
    table["bun"] = rng.uniform(5.0, 80.0, size=n).round(1)
    table["temperature"] = rng.uniform(35.0, 40.5, size=n).round(2)
    table["sbp"] = rng.uniform(80.0, 180.0, size=n).round(0)
    table["heart_rate"] = rng.uniform(50.0, 140.0, size=n).round(0)
    if grid_doses:
        table["dose_mg"] = rng.choice(DOSE_GRID_MG, size=n)
    else:
        table["dose_mg"] = np.where(rng.random(n) < 0.2, 0.0, rng.uniform(250.0, 3000.0, size=n).round(1))
    if terminal_fraction > 0:
        terminal = rng.random(n_stays) < terminal_fraction
        table["done"] = last & terminal[codes]
    else:
        terminal = np.zeros(n_stays, dtype=bool)
    if reward:
        values = rng.normal(0.5, 1.0, size=n)
        values[last & ~terminal[codes]] = np.nan
        table["reward"] = values
    if behavior_prob:
        table["behavior_prob"] = rng.uniform(0.05, 1.0, size=n)
    if covariates:
        per_stay = {
            "weight_kg": rng.uniform(45, 140, n_stays).round(1),
            "age": rng.integers(18, 95, n_stays).astype(float),
            "sex": rng.integers(0, 2, n_stays).astype(float),
            "height_cm": rng.uniform(150, 200, n_stays).round(0),
            "dialysis": (rng.random(n_stays) < 0.1).astype(float),
        }
        for name in COVARIATES:
            table[name] = per_stay[name][codes]
    return table


@st.composite
def tables(draw: st.DrawFn, **fixed: object) -> pd.DataFrame:
    """Random valid tables (kept small so that each example converts in milliseconds)."""
    params: dict[str, object] = {
        "n_stays": draw(st.integers(1, 6)),
        "rows": (draw(st.integers(2, 3)), draw(st.integers(3, 8))),
        "seed": draw(st.integers(0, 2**32 - 1)),
        "time": draw(st.sampled_from(["step", "time_h"])),
        "terminal_fraction": draw(st.sampled_from([0.0, 0.5, 1.0])),
        "reward": draw(st.booleans()),
        "behavior_prob": draw(st.booleans()),
        "stay_prefix": draw(st.sampled_from([None, "icu-"])),
    }
    params.update(fixed)
    return make_table(**params)  # type: ignore[arg-type]


def stay_blocks(table: pd.DataFrame) -> list[pd.DataFrame]:
    """The table's stays, in order, as separate frames."""
    return [block for _, block in table.groupby("stay_id", sort=False)]


def test_builder_makes_contiguous_increasing_stays():
    table = make_table(n_stays=20, seed=3, terminal_fraction=0.5, reward=True, covariates=True)
    for block in stay_blocks(table):
        assert block.index.is_monotonic_increasing
        assert np.all(np.diff(block.index) == 1)
        assert np.all(np.diff(block["step"]) > 0)
        assert not block["done"].iloc[:-1].any()
    assert table[list(FEATURES)].notna().all().all()
    assert table["reward"].isna().sum() == (~table.groupby("stay_id")["done"].last()).sum()


def test_builder_is_seeded():
    pd.testing.assert_frame_equal(make_table(seed=5, reward=True), make_table(seed=5, reward=True))
    assert not make_table(seed=5).equals(make_table(seed=6))
