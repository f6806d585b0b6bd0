"""vanco_pk in other people's stacks: render modes, the normalised-dose wrapper, SB3 by env id,
and the simulator installed alone (no torch, no d3rlpy, no vanco_offline)."""

import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from vanco_pk.wrappers import NormalizedDose, action_to_dose

ENVS = Path(__file__).resolve().parents[1] / "envs"


def _run(env, doses):
    env.reset(seed=3)
    infos = []
    for dose in doses:
        infos.append(env.step(np.array([dose], dtype=np.float32))[4])
    return infos


def test_ansi_render_is_the_chart_so_far():
    env = gym.make("vanco_pk:VancoPK-v0", render_mode="ansi")
    infos = _run(env, [1500.0, 1000.0, 0.0])
    text = env.render()
    lines = text.splitlines()
    rows = [line for line in lines if line.strip() and line.split()[0].replace(".", "").isdigit()]
    assert [float(r.split()[0]) for r in rows] == [0.0, 12.0, 24.0, 36.0]
    assert [r.split()[-1] for r in rows] == ["1500", "1000", "0", "?"]
    # the true trough shown at 36 h is the simulator's
    assert float(rows[-1].split()[3]) == pytest.approx(infos[-1]["trough"], abs=0.05)


@pytest.mark.slow
def test_rgb_array_is_the_true_concentration_curve():
    env = gym.make("vanco_pk:VancoPK-v0", render_mode="rgb_array")
    infos = _run(env, [2000.0, 1000.0, 1000.0, 1000.0])
    image = env.render()
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.std() > 5  # something is drawn, not a blank canvas
    t, c = env.unwrapped._trace.curve()
    for k, info in enumerate(infos, start=1):
        at = np.flatnonzero(np.isclose(t, 12.0 * k))[0]
        assert c[at] == pytest.approx(info["trough"], rel=1e-6)
        assert c[(t > 12.0 * (k - 1)) & (t <= 12.0 * k)].max() == pytest.approx(info["peak"], rel=0.02)


def test_other_render_modes_warn_as_gymnasium_does():
    env = gym.make("vanco_pk:VancoPK-v0")  # render_mode None
    env.reset(seed=0)
    with pytest.warns(UserWarning, match="nothing to render"):
        assert env.render() is None


def test_normalized_dose_maps_minus_one_one_to_the_dose_range():
    env = NormalizedDose(gym.make("vanco_pk:VancoPK-v0"))
    assert env.action_space.low.tolist() == [-1.0] and env.action_space.high.tolist() == [1.0]
    env.reset(seed=0)
    given = [env.step(np.array([a], dtype=np.float32))[4]["dose_mg"] for a in (-1.0, 0.0, 1.0)]
    assert given == pytest.approx([0.0, 1500.0, 3000.0], abs=1e-3)
    assert action_to_dose(np.array([-2.0, 0.5])).tolist() == [0.0, 2250.0]
    with pytest.raises(ValueError, match="NormalizedDose"):
        NormalizedDose(gym.make("vanco_pk:VancoPKDiscrete-v0"))


@pytest.mark.slow
def test_sb3_ppo_trains_1000_steps_from_the_env_id():
    pytest.importorskip("stable_baselines3")
    import torch
    from stable_baselines3 import PPO

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = PPO("MlpPolicy", "vanco_pk:VancoPK-v0", n_steps=256, batch_size=64, seed=0, device="cpu")
        model.learn(total_timesteps=1000)
    finally:
        torch.set_num_threads(threads)
    assert model.num_timesteps >= 1000
    obs = gym.make("vanco_pk:VancoPK-v0").reset(seed=1)[0]
    action, _ = model.predict(obs, deterministic=True)
    assert action.shape == (1,) and 0.0 <= float(action[0]) <= 3000.0


STANDALONE = textwrap.dedent(
    """
    import importlib.abc, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"torch", "d3rlpy", "vanco_offline", "matplotlib", "pandas", "sklearn"}:
                raise ImportError(f"blocked: {name}")
            return None

    sys.meta_path.insert(0, Block())
    import gymnasium as gym
    import numpy as np
    import vanco_pk
    from vanco_pk.policies import POLICIES, make_policy

    for env_id in ("vanco_pk:VancoPK-v0", "vanco_pk:VancoPKDiscrete-v0"):
        env = gym.make(env_id, render_mode="ansi")
        for name in sorted(POLICIES):
            policy = make_policy(name)
            obs, info = env.reset(seed=0)
            policy.reset(info["covariates"], seed=0)
            done, total = False, 0.0
            while not done:
                dose = policy.act(obs, info)
                action = (vanco_pk.targets.dose_to_grid_index(dose) if "Discrete" in env_id
                          else np.array([dose], dtype=np.float32))
                obs, reward, terminated, truncated, info = env.step(action)
                total += reward
                done = terminated or truncated
            assert np.isfinite(total), name
        assert "time_h" in env.render()
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in {"torch", "d3rlpy", "vanco_offline"})
    print("OK", len(POLICIES), loaded)
    """
)


def test_vanco_pk_runs_without_torch_d3rlpy_or_vanco_offline():
    """The envs/ distribution's promise: numpy, scipy and gymnasium are enough."""
    out = subprocess.run(
        [sys.executable, "-c", STANDALONE],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ENVS), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[:2] == ["OK", "5"] and out.stdout.strip().endswith("[]")
