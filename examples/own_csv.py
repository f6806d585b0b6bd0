"""Train VancoIQL on your own dosing table (CSV or Parquet in the schema of data/README.md).

    python examples/own_csv.py --data my_stays.csv --impute-max-age-h 24

Without --data it uses data/sample_cohort.csv. The conversion report says how many rows,
stays and transitions went in and out, and what was imputed; a table with unit errors
(temperature in F, creatinine in umol/L, ...) stops with a message naming column, stay and row.
"""

import argparse
from pathlib import Path

from vanco_pk.targets import COVARIATES, FEATURES

from vanco_offline.configs import load_preset
from vanco_offline.data import load_table
from vanco_offline.recommend import recommend
from vanco_offline.training import train

HERE = Path(__file__).resolve().parent

parser = argparse.ArgumentParser()
parser.add_argument("--data", default=str(HERE.parent / "data" / "sample_cohort.csv"))
parser.add_argument("--preset", default="default")
parser.add_argument("--steps", type=int, default=3000)
parser.add_argument("--impute-max-age-h", type=float, default=None)
parser.add_argument("--log-dir", default="d3rlpy_logs")
args = parser.parse_args()

table = load_table(args.data)
result = train(
    load_preset(args.preset),
    table,
    data_source=args.data,
    n_steps=args.steps,
    impute_max_age_h=args.impute_max_age_h,
    log_root=args.log_dir,
    show_progress=False,
)
print(result.report)
print(f"model written to {result.model_path}")

# A recommendation for the table's last stay at its last row. The default preset's
# observation holds the previous dose and the Bayesian exposure features, so the stay's rows
# so far go with the state (the MIPD comparison fits the same levels).
stay = table[table["stay_id"] == table["stay_id"].iloc[-1]]
last = stay.iloc[-1]
state = {name: last[name] for name in FEATURES}
covariates = {c: last[c] for c in COVARIATES if c in table}
print(recommend(result.model, state, covariates, history=stay))
