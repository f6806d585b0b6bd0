"""Quickstart: VancoIQL used exactly like d3rlpy's IQLConfig, on a synthetic ICU cohort."""

import argparse

import vanco_offline  # noqa: F401  (first: it silences the notice d3rlpy's `gym` import prints)

# isort: split
import d3rlpy

from vanco_offline.algos import VancoIQLConfig
from vanco_offline.data import convert, fit_scalers, generate_cohort

parser = argparse.ArgumentParser()
parser.add_argument("--patients", type=int, default=300)
parser.add_argument("--steps", type=int, default=3000)
args = parser.parse_args()

table = generate_cohort(args.patients, policy="clinician", seed=0, level_missing_prob=0.5)
data = convert(table, "continuous", fill_unmeasured_level=True)  # one MDPDataset, with a report
print(data.report)

scalers = fit_scalers(data)  # standardised observations; doses scaled by the clinical 0-3000 mg bounds
network = d3rlpy.models.VectorEncoderFactory([32, 32])  # small: 7 inputs, a few thousand steps
iql = VancoIQLConfig(
    observation_scaler=scalers.observation_scaler,
    action_scaler=scalers.action_scaler,
    actor_encoder_factory=network,
    critic_encoder_factory=network,
    value_encoder_factory=network,
    expectile=0.7,
    weight_temp=3.0,
).create()
d3rlpy.seed(0)
iql.fit(
    data.dataset,
    n_steps=args.steps,
    n_steps_per_epoch=args.steps,
    show_progress=False,
    logger_adapter=d3rlpy.logging.NoopAdapterFactory(),
)

state = data.dataset.episodes[0].observations[3:4]  # one patient's state on day 2
print("state:", {name: round(float(v), 2) for name, v in zip(data.observation_names, state[0], strict=True)})
dose = iql.predict(state)
print(f"recommended dose: {dose[0, 0]:.0f} mg, learned value {iql.predict_value(state, dose)[0]:.2f}")
