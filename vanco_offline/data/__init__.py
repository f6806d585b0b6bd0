"""Data layer: schema, validation, reward, conversion to MDPDataset, synthetic cohorts.

Typical use::

    from vanco_offline.data import CarryForward, convert, fit_scalers, load_table, split_table

    train, valid, test = split_table(load_table("stays.csv"), seed=0)
    result = convert(train, "continuous", impute=CarryForward(max_age_h=24), fill_unmeasured_level=True)
    print(result.report)
    scalers = fit_scalers(result)   # observation_scaler / action_scaler for a d3rlpy config

The table schema (columns, units, MIMIC-IV mapping) is documented in ``data/README.md``.
"""

from vanco_offline.data.convert import convert, convert_with, observation_table
from vanco_offline.data.episodes import ConversionResult, make_dataset
from vanco_offline.data.io import load_dataset, load_table, save_dataset, save_table
from vanco_offline.data.minari_format import export_minari
from vanco_offline.data.observations import pk_feature_table, validate
from vanco_offline.data.options import CarryForward, ConversionSettings
from vanco_offline.data.pk_replay import fit_local_model
from vanco_offline.data.report import ConversionReport, Exclusion
from vanco_offline.data.split import Scalers, fit_scalers, split_dataset, split_stays, split_table

__all__ = [
    "CarryForward",
    "ConversionReport",
    "ConversionResult",
    "ConversionSettings",
    "Exclusion",
    "Scalers",
    "convert",
    "convert_with",
    "export_minari",
    "fit_local_model",
    "fit_scalers",
    "load_dataset",
    "load_table",
    "make_dataset",
    "observation_table",
    "pk_feature_table",
    "save_dataset",
    "save_table",
    "split_dataset",
    "split_stays",
    "split_table",
    "validate",
]

# Synthetic cohorts, appended to the exports above.
from vanco_offline.data.cohort import builtin_cohort, generate_cohort, score_table

__all__ += ["builtin_cohort", "generate_cohort", "score_table"]
