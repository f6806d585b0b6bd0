"""Train Stable-Baselines3's PPO on the simulator by its Gymnasium id, then score it beside MIPD.

``vanco_pk:VancoPK-v0`` is a plain Gymnasium environment: SB3 makes it from the id (and
passes ``render_mode="rgb_array"``, which the env accepts). Its action is the dose in mg,
``Box(0, 3000)``; PPO's Gaussian starts around 0 with unit scale, so it is wrapped in
:class:`vanco_pk.wrappers.NormalizedDose` (``dose = (a + 1) / 2 * 3000`` mg) to start near
1.5 g. Online RL explores on the patients themselves, which an ICU cannot allow: this is a
reference point for the offline methods of vanco_offline, not a way to dose.

Needs ``pip install stable-baselines3`` (the ``sb3`` extra); the rest is vanco_pk only.
"""

import argparse

import gymnasium as gym
import numpy as np
import vanco_pk
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from vanco_pk.targets import AUC24_TARGET
from vanco_pk.wrappers import NormalizedDose

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=20_000, help="environment steps (14 per patient)")
parser.add_argument("--eval-patients", type=int, default=50)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

env = make_vec_env("vanco_pk:VancoPK-v0", n_envs=4, seed=args.seed, wrapper_class=NormalizedDose)
# A rollout of 4 x n_steps environment steps per update (256 each, fewer for a short run).
n_steps = max(16, min(256, args.steps // 4))
model = PPO("MlpPolicy", env, n_steps=n_steps, batch_size=64, seed=args.seed, device="cpu", verbose=0)
model.learn(total_timesteps=args.steps)


def score(act, eval_seed: int = 10_000) -> tuple[float, float]:
    """Mean return and share of decisions from 24 h with the true AUC24 in 400-600, on fixed patients."""
    returns, hits = [], []
    for i in range(args.eval_patients):
        e = NormalizedDose(gym.make("vanco_pk:VancoPK-v0"))
        obs, info = e.reset(seed=eval_seed + i)
        reset = getattr(act, "reset", None)
        if reset is not None:
            reset(info["covariates"], seed=eval_seed + i)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, info = e.step(act(obs, info))
            total += reward
            done = terminated or truncated
            if info["time_h"] > 24:
                hits.append(AUC24_TARGET[0] <= info["auc24"] <= AUC24_TARGET[1])
        returns.append(total)
    return float(np.mean(returns)), float(np.mean(hits))


class Reference:
    """A vanco_pk reference policy (acts in mg) seen through the normalised action."""

    def __init__(self, name: str):
        self.policy = vanco_pk.make_policy(name)

    def reset(self, covariates, seed):
        self.policy.reset(covariates, seed=seed)

    def __call__(self, obs, info):
        return np.array([self.policy.act(obs, info) / vanco_pk.DOSE_MAX_MG * 2.0 - 1.0], dtype=np.float32)


def ppo_act(obs, info):
    return model.predict(obs, deterministic=True)[0]


print(f"{'policy':<22} {'return':>8} {'AUC 400-600':>12}")
for name, act in (("PPO (online, SB3)", ppo_act), ("MIPD (Bayesian)", Reference("mipd"))):
    ret, attain = score(act)
    print(f"{name:<22} {ret:>8.2f} {attain:>12.1%}")
print(f"PPO: {args.steps} environment steps; {args.eval_patients} held-out simulated patients")
