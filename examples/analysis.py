"""Analysis of a training run: training diagnostics beside off-policy estimates and the truth.

The training diagnostics (greedy-policy Q, mean V, Monte-Carlo return, mean reward, relative
improvement; ``vanco_offline.algos.evaluators``) are shown next to what they cannot tell: an
off-policy estimate with its interval and diagnostics, and, because the data come from the
simulator, the true value of the same policy. It does so for the `base` preset (the `seed`
preset's hyperparameters with scaled doses) and the `default` preset, then writes the
figures of the recommended model.
"""

import argparse
import dataclasses
from pathlib import Path

from vanco_offline.commands.common import DIAGNOSTICS, quiet_d3rlpy
from vanco_offline.configs import load_preset
from vanco_offline.data.cohort import BUILTIN_WORLD, builtin_cohort
from vanco_offline.ope import FQESettings, IntervalSettings, SimulatorTruth, evaluate
from vanco_offline.plots import write_plots
from vanco_offline.training import train

parser = argparse.ArgumentParser()
parser.add_argument("--patients", type=int, default=300)
parser.add_argument("--steps", type=int, default=3000)
parser.add_argument("--fqe-steps", type=int, default=3000)
parser.add_argument("--eval-patients", type=int, default=1000, help="fresh patients for the true value")
parser.add_argument("--log-dir", default="d3rlpy_logs")
args = parser.parse_args()

quiet_d3rlpy()
table = builtin_cohort(args.patients, seed=0)
rows = []
for preset_name in ("base", "default"):
    preset = load_preset(preset_name)
    run = train(preset, table, n_steps=args.steps, log_root=args.log_dir, show_progress=False)
    # The truth is scored with the reward the preset trained on, as the estimates are.
    truth = SimulatorTruth(
        n_patients=args.eval_patients, world=dataclasses.replace(BUILTIN_WORLD, reward=preset.data.reward)
    )
    report = evaluate(
        run.model.algo,
        run.valid,
        estimators=("fqe", "wdr"),
        fqe=FQESettings(n_steps=args.fqe_steps),
        truth=truth,
        intervals=IntervalSettings(n_bootstrap=300),
    )
    metrics = run.model.training["final_metrics"]
    rows.append((preset_name, metrics, report))
    print(f"\n== preset {preset_name!r}: {run.log_dir}")
    print(report)
    if preset_name == "default":
        figures = write_plots(run.model, Path(run.log_dir), log_dir=run.log_dir, table=table)

print("\nTraining diagnostics beside what they are meant to predict (discounted return, gamma 0.99):")
print("| preset | " + " | ".join(DIAGNOSTICS) + " | FQE | WDR | true value |")
print("|---|" + "---|" * (len(DIAGNOSTICS) + 3))
for name, metrics, report in rows:
    cells = [f"{metrics[d]:.3f}" for d in DIAGNOSTICS]
    estimates = [f"{report.value(e):.2f}" for e in ("fqe", "wdr")]
    print(f"| {name} | " + " | ".join(cells + estimates) + f" | {report.truth.value:.2f} |")
print("\n'base' trains on the all-negative 'seed' reward, so its row is on another scale: compare each")
print("diagnostic with its own row's truth, not across rows. Figures of the default model:")
for path in figures:
    print(f"  {path}")
