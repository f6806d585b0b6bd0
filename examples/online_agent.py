"""Train an online Gymnasium agent in the simulator: d3rlpy's SAC on ``vanco_pk:VancoPK-v0``.

vanco_pk is a plain Gymnasium environment, so any Gymnasium agent trains on it (a
stable-baselines3 PPO/SAC works the same way: ``SAC("MlpPolicy", env).learn(...)``). Online RL
needs a simulator and unlimited, risky exploration: exactly what a real ICU cannot offer, and
why the project learns offline from logged dosing. Here the online agent is a reference point.
"""

import argparse

import vanco_offline  # noqa: F401  (first: it silences the notice d3rlpy's `gym` import prints)

# isort: split
import d3rlpy
import gymnasium as gym
import numpy as np
from vanco_pk.targets import FEATURES

from vanco_offline.rollout import EvalPatients, algo_actor, reference_actor, rollout

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=2000, help="environment steps (14 per patient)")
parser.add_argument("--eval-patients", type=int, default=200)
args = parser.parse_args()

env = gym.make("vanco_pk:VancoPK-v0")
network = d3rlpy.models.VectorEncoderFactory([64, 64])
sac = d3rlpy.algos.SACConfig(
    actor_encoder_factory=network,
    critic_encoder_factory=network,
    action_scaler=d3rlpy.preprocessing.MinMaxActionScaler(
        minimum=np.array([0.0]), maximum=np.array([3000.0])
    ),
    observation_scaler=d3rlpy.preprocessing.StandardObservationScaler(
        mean=np.array([12.0, 1.2, 9.0, 18.0, 37.2, 120.0, 85.0]),
        std=np.array([9.0, 0.6, 3.0, 10.0, 0.7, 16.0, 12.0]),
    ),
    batch_size=128,
).create()
d3rlpy.seed(0)
env.reset(seed=0)
sac.fit_online(
    env,
    d3rlpy.dataset.ReplayBuffer(d3rlpy.dataset.InfiniteBuffer(), env=env),
    n_steps=args.steps,
    n_steps_per_epoch=args.steps,
    update_start_step=500,
    show_progress=False,
    logger_adapter=d3rlpy.logging.NoopAdapterFactory(),
)
patients = EvalPatients(n_patients=args.eval_patients)
print(f"{'policy':<12} {'AUC 400-600':>11} {'AKI':>6} {'return':>8}")
for name, actor in {
    "online SAC": algo_actor(sac, FEATURES),
    "clinician": reference_actor("clinician", seed=0),
    "mipd": reference_actor("mipd", seed=0),
}.items():
    act, reset = actor
    scores = rollout(act, patients, reset)
    print(f"{name:<12} {scores.attainment:>11.3f} {scores.aki_rate:>6.3f} {scores.return_:>8.2f}")
