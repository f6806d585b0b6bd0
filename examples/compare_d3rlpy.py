"""VancoIQL beside d3rlpy's CQL, BCQ, IQL and BC on the same data, scored in the simulator.

Every algorithm gets the same converted data, the same scalers and the same number of steps;
each is then rolled out on the same 200 held-out simulated patients and scored on the true
exposure (AUC24 400-600 attainment) and kidney outcome. The full, multi-seed version with
confidence intervals is `vanco-offline bench offline`.
"""

import argparse

import vanco_offline  # noqa: F401  (first: it silences the notice d3rlpy's `gym` import prints)

# isort: split
import d3rlpy
from vanco_pk import World

from vanco_offline.algos import VancoIQLConfig
from vanco_offline.data import convert, fit_scalers, generate_cohort
from vanco_offline.rollout import EvalPatients, algo_actor, reference_actor, rollout

parser = argparse.ArgumentParser()
parser.add_argument("--patients", type=int, default=300)
parser.add_argument("--steps", type=int, default=2000)
parser.add_argument("--eval-patients", type=int, default=200)
args = parser.parse_args()

world = World.make(level_missing_prob=0.5)  # the icu scenario, half the ordered troughs missing
data = convert(
    generate_cohort(args.patients, "clinician", seed=0, world=world),
    "continuous",
    fill_unmeasured_level=True,
)
scalers = fit_scalers(data)
common = {"observation_scaler": scalers.observation_scaler, "action_scaler": scalers.action_scaler}
algorithms = {
    "VancoIQL": VancoIQLConfig(**common),
    "d3rlpy IQL": d3rlpy.algos.IQLConfig(**common),
    "d3rlpy CQL": d3rlpy.algos.CQLConfig(**common),
    "d3rlpy BCQ": d3rlpy.algos.BCQConfig(**common),
    "d3rlpy BC": d3rlpy.algos.BCConfig(**common),
}
patients = EvalPatients(n_patients=args.eval_patients, world=world)
print(f"{'policy':<12} {'AUC 400-600':>11} {'AKI':>6} {'return':>8}")
for name, config in algorithms.items():
    d3rlpy.seed(0)
    algo = config.create()
    algo.fit(
        data.dataset,
        n_steps=args.steps,
        n_steps_per_epoch=args.steps,
        show_progress=False,
        logger_adapter=d3rlpy.logging.NoopAdapterFactory(),
    )
    act, reset = algo_actor(algo, data.observation_names)
    scores = rollout(act, patients, reset)
    print(f"{name:<12} {scores.attainment:>11.3f} {scores.aki_rate:>6.3f} {scores.return_:>8.2f}")
for name in ("clinician", "mipd"):
    act, reset = reference_actor(name, seed=0)
    scores = rollout(act, patients, reset)
    print(f"{name:<12} {scores.attainment:>11.3f} {scores.aki_rate:>6.3f} {scores.return_:>8.2f}")
