"""Roll a dosing policy out in the vanco_pk Gymnasium environment and look at what happened.

One patient, 7 days, a decision every 12 h: the observation is what the ward sees (last
measured trough, creatinine, WBC, BUN, temperature, SBP, heart rate); `info` carries the
simulator's truth (AUC24, trough, clearance, kidney injury, AKI flag).
"""

import argparse

import gymnasium as gym
import numpy as np
import vanco_pk
from vanco_pk.targets import AUC24_TARGET

parser = argparse.ArgumentParser()
parser.add_argument("--policy", default="mipd", choices=["clinician", "mipd", "oracle", "fixed", "random"])
parser.add_argument("--seed", type=int, default=3)
args = parser.parse_args()

env = gym.make("vanco_pk:VancoPK-v0", level_missing_prob=0.3)
policy = vanco_pk.make_policy(args.policy)
obs, info = env.reset(seed=args.seed)
policy.reset(info["covariates"], seed=args.seed)
print("patient:", {k: round(float(v), 2) for k, v in info["covariates"].items()})
print("hour  trough seen   SCr  dose mg  true AUC24  AKI  reward")
total, done = 0.0, False
while not done:
    dose = policy.act(obs, info)
    seen = obs[0]
    obs, reward, terminated, truncated, info = env.step(np.array([dose], dtype=np.float32))
    total += reward
    done = terminated or truncated
    flag = "*" if AUC24_TARGET[0] <= info["auc24"] <= AUC24_TARGET[1] else " "
    print(
        f"{info['time_h']:>4.0f} {seen:>11.1f} {obs[1]:>5.2f} {dose:>8.0f} {info['auc24']:>9.0f}{flag} "
        f"{int(info['aki_so_far']):>4} {reward:>7.2f}"
    )
print(f"return {total:.2f}  (* = true AUC24 in {AUC24_TARGET[0]:.0f}-{AUC24_TARGET[1]:.0f} mg*h/L)")
