"""Hindsight AUC24: the stay refitted with all its levels, used back to the first decision."""

from __future__ import annotations

import numpy as np
from vanco_bench.offline.variants import variant_reward

from vanco_offline.data import pk_feature_table
from vanco_offline.data.cohort import generate_cohort
from vanco_offline.data.hindsight import hindsight_auc_table


def test_hindsight_equals_the_filtered_estimate_where_no_later_level_exists():
    table = generate_cohort(6, {"clinician": 1.0}, seed=2, level_missing_prob=0.5, scenario="ideal")
    filtered = pk_feature_table(table)["pk_auc24"].to_numpy()
    hindsight = hindsight_auc_table(table).to_numpy()
    last = ~table["stay_id"].duplicated(keep="last").to_numpy()
    # At a stay's last decision both use every level of the stay.
    np.testing.assert_allclose(hindsight[last], filtered[last], rtol=1e-6)
    # Earlier, a later level changes the estimate somewhere.
    assert not np.allclose(hindsight[~last], filtered[~last])
    # Without any level, both are the population prior's.
    bare = table.assign(vanco_level=np.nan, level_measured=0) if "level_measured" in table else None
    if bare is not None:
        np.testing.assert_allclose(
            hindsight_auc_table(bare).to_numpy(), pk_feature_table(bare)["pk_auc24"].to_numpy(), rtol=1e-6
        )
    reward = variant_reward(table, "exposure-hindsight")["reward"].to_numpy()
    assert np.isnan(reward[last]).all() and np.isfinite(reward[~last]).all()
