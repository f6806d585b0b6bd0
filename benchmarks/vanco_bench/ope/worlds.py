"""``bench ope --worlds``: off-policy intervals chosen on one world, tested on the others.

Every twin setting that is chosen -- here the width of the refit band
(:attr:`~vanco_offline.ope.TwinSettings.band`) -- is chosen on ONE world (``--calibrate-on``,
default ``icu``): the narrowest width of ``--bands`` whose 95 % intervals cover the truth for
at least :data:`CHOOSE_AT` of that world's panel policies in value, attainment and the paired
value difference (the widest when none does). The chosen twin, and the importance-weighted
estimators of ``--estimators``, are then run unchanged in every other world of ``--worlds``
(each with its own logged cohort, refit, AKI calibration and truth), and their coverage,
Spearman, regret@1 and error are reported there: value, attainment and AKI rate, and the
paired difference of every policy to the baseline :data:`BASELINE` (MIPD on the prior
refitted to that world's logs). The learned policies (DiscreteVancoIQL, greedy and stochastic, DiscreteCQL,
DiscreteBC) are trained once, on a cohort of the calibration world, and evaluated in every
world.

The worlds are :data:`vanco_pk.scenario.WORLD_PANEL` and :data:`EXTRA_WORLDS`, worlds with a
structure the twin does not model. Coverage is pooled over the held-out worlds with an exact
(Clopper-Pearson) 95 % interval; policies of one world share its logs, so the pooled interval
is optimistic.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import binomtest, spearmanr
from vanco_pk.scenario import WORLD_PANEL, Scenario

__all__ = [
    "BAND_GRID",
    "BASELINE",
    "CHOOSE_AT",
    "EXTRA_WORLDS",
    "OPE_WORLDS",
    "WorldsSettings",
    "choose_band",
    "coverage_ci",
    "run_worlds",
    "worlds_options",
]

#: Worlds with a structure the twin does not model. ``icu_sepsis_volume``: the ``icu`` world
#: whose central volume starts at twice the population model's (capillary leak and fluid
#: resuscitation in sepsis) and returns to it with a 48-h half-life. Septic ICU patients have
#: larger volumes than other patients (Roberts 2011, Antimicrob Agents Chemother 55:2704:
#: 1.53 L/kg); the factor and the half-life are assumptions.
EXTRA_WORLDS: dict[str, Scenario] = {
    "icu_sepsis_volume": dataclasses.replace(
        WORLD_PANEL["icu"], name="icu_sepsis_volume", sepsis_v1_excess=1.0, sepsis_v1_half_life_h=48.0
    ),
}
#: Every world ``--worlds`` accepts.
OPE_WORLDS: dict[str, Scenario] = {**WORLD_PANEL, **EXTRA_WORLDS}
#: Band widths tried on the calibration world.
BAND_GRID: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0)
#: The share of the calibration world's policies the chosen band must cover (in value,
#: attainment and the paired value difference).
CHOOSE_AT = 0.9
#: The reference of every paired difference: MIPD on the prior refitted to the world's logs.
BASELINE = "MIPD (refit)"
#: The learned policies of the panel (DiscreteVancoIQL, greedy and stochastic, and these).
WORLD_ALGOS: tuple[str, ...] = ("DiscreteCQL", "DiscreteBC")
#: The importance-weighted estimators ``--worlds`` runs by default (those the demo prints).
DEFAULT_ESTIMATORS: tuple[str, ...] = ("wis", "wdr")


@dataclasses.dataclass(frozen=True)
class WorldsSettings:
    """What ``--worlds`` adds to a run: the worlds, the calibration world, the other
    estimators and the band widths tried."""

    worlds: tuple[str, ...]
    calibrate_on: str
    estimators: tuple[str, ...] = DEFAULT_ESTIMATORS
    bands: tuple[float, ...] = BAND_GRID

    def __post_init__(self) -> None:
        unknown = [w for w in (*self.worlds, self.calibrate_on) if w not in OPE_WORLDS]
        if unknown:
            raise ValueError(
                f"--worlds/--calibrate-on: unknown world(s) {unknown}; choose from {list(OPE_WORLDS)}"
            )
        if len(set(self.worlds)) != len(self.worlds):
            raise ValueError(f"--worlds names a world twice: {list(self.worlds)}")
        if self.calibrate_on not in self.worlds:
            raise ValueError(
                f"--calibrate-on {self.calibrate_on} must be one of --worlds {list(self.worlds)}"
            )
        if len(self.worlds) < 2:
            raise ValueError("--worlds needs the calibration world and at least one held-out world")
        if not self.bands or any(not (np.isfinite(b) and b >= 0) for b in self.bands):
            raise ValueError(f"--bands must be widths >= 0, got {list(self.bands)}")

    @property
    def held_out(self) -> tuple[str, ...]:
        return tuple(w for w in self.worlds if w != self.calibrate_on)


def worlds_options(args: argparse.Namespace) -> Any:
    """The validated ``--worlds`` options, or ``None`` without ``--worlds`` (ValueError naming the flag)."""
    worlds = getattr(args, "worlds", None)
    extra = [
        flag
        for flag, value in (
            ("--estimators", getattr(args, "estimators", None)),
            ("--bands", getattr(args, "bands", None)),
        )
        if value is not None
    ]
    if not worlds:
        if extra:
            raise ValueError(f"{', '.join(extra)} only apply with --worlds")
        return None
    from vanco_offline.ope.evaluate import ESTIMATORS

    estimators = DEFAULT_ESTIMATORS if args.estimators is None else tuple(args.estimators)
    bad = [e for e in estimators if e not in ESTIMATORS or e == "twin"]
    if bad:
        raise ValueError(
            f"--estimators: {bad} unknown or the twin itself; "
            f"choose from {[e for e in ESTIMATORS if e != 'twin']}"
        )
    return WorldsSettings(
        worlds=tuple(worlds),
        calibrate_on=args.calibrate_on,
        estimators=estimators,
        bands=BAND_GRID if args.bands is None else tuple(args.bands),
    )


@dataclasses.dataclass
class _PolicyResult:
    truth: Any  # TrueValue of the policy as given
    truth_softened: Any  # of the softened policy (importance sampling), or None
    twins: dict[float, Any]  # band -> TwinEstimate
    others: dict[str, Any]  # estimator -> Estimate


def coverage_ci(hits: int, n: int) -> tuple[float, float]:
    """Exact (Clopper-Pearson) 95 % interval of a coverage of ``hits`` in ``n``."""
    ci = binomtest(hits, n).proportion_ci(0.95, method="exact")
    return float(ci.low), float(ci.high)


def _metric_scores(
    truth: Mapping[str, float],
    est: Mapping[str, float],
    intervals: Mapping[str, tuple[float, float]],
    higher_is_better: bool,
) -> dict[str, float]:
    names = list(est)
    t = np.array([truth[k] for k in names])
    e = np.array([est[k] for k in names])
    pick = names[int(np.argmax(e) if higher_is_better else np.argmin(e))]
    best = t.max() if higher_is_better else t.min()
    hits = [intervals[k][0] <= truth[k] <= intervals[k][1] for k in names]
    return {
        "n": len(names),
        "hits": int(np.sum(hits)),
        "coverage": float(np.mean(hits)),
        "spearman": float(spearmanr(e, t).statistic),
        "regret": float(abs(best - truth[pick])),
        "mae": float(np.mean(np.abs(e - t))),
    }


def _twin_scores(results: Mapping[str, _PolicyResult], band: float, gap: float) -> dict[str, Any]:
    """Value, attainment, AKI and paired-difference scores of the twin at ``band``."""
    from vanco_offline.ope import paired_difference

    out: dict[str, Any] = {}
    for metric, truth_of, higher in (
        ("value", lambda t: t.value, True),
        ("attainment", lambda t: t.attainment, True),
        ("aki_rate", lambda t: t.aki_rate, False),
    ):
        truth = {k: truth_of(r.truth) for k, r in results.items()}
        est = {k: getattr(r.twins[band], metric) for k, r in results.items()}
        name = {"value": "interval", "attainment": "attainment_interval", "aki_rate": "aki_interval"}[metric]
        ints = {
            k: (getattr(r.twins[band], name).low, getattr(r.twins[band], name).high)
            for k, r in results.items()
        }
        out[metric] = _metric_scores(truth, est, ints, higher)
    out["value"]["regret"] /= gap
    out["value"]["mae"] /= gap
    base = results[BASELINE]
    for metric, truth_of in (("value", lambda t: t.value), ("attainment", lambda t: t.attainment)):
        hits = []
        for k, r in results.items():
            if k == BASELINE:
                continue
            diff = paired_difference(r.twins[band], base.twins[band], metric)
            hits.append(diff.interval.covers(truth_of(r.truth) - truth_of(base.truth)))
        out[f"diff {metric}"] = {"n": len(hits), "hits": int(np.sum(hits)), "coverage": float(np.mean(hits))}
    return out


def _other_scores(results: Mapping[str, _PolicyResult], name: str, gap: float) -> dict[str, Any]:
    truth, est, ints = {}, {}, {}
    for k, r in results.items():
        e = r.others.get(name)
        if e is None or not np.isfinite(e.value):
            continue
        t = r.truth_softened if e.softened and r.truth_softened is not None else r.truth
        truth[k], est[k], ints[k] = t.value, e.value, (e.interval.low, e.interval.high)
    scores = _metric_scores(truth, est, ints, True)
    scores["regret"] /= gap
    scores["mae"] /= gap
    return {"value": scores}


def choose_band(scores: Mapping[float, Mapping[str, Any]], at: float = CHOOSE_AT) -> float:
    """The narrowest band whose value, attainment and paired value coverage are all >= ``at``
    (the widest band when none is)."""
    for band in sorted(scores):
        s = scores[band]
        if min(s["value"]["coverage"], s["attainment"]["coverage"], s["diff value"]["coverage"]) >= at:
            return band
    return max(scores)


def _pct(x: float) -> str:
    return f"{x:.0%}"


def _row(world: str, role: str, estimator: str, s: Mapping[str, Any]) -> str:
    v = s["value"]
    cells = [
        world,
        role,
        estimator,
        str(v["n"]),
        f"{_pct(v['coverage'])} ({v['hits']}/{v['n']})",
        f"{v['spearman']:.2f}",
        f"{v['regret']:.1%}",
        f"{v['mae']:.3f}",
    ]
    if "attainment" in s:
        a, k = s["attainment"], s["aki_rate"]
        cells += [
            f"{_pct(a['coverage'])}",
            f"{a['spearman']:.2f}",
            f"{100 * a['regret']:.1f}",
            f"{100 * a['mae']:.1f}",
            f"{_pct(k['coverage'])}",
            f"{k['spearman']:.2f}",
            f"{100 * k['regret']:.1f}",
            f"{100 * k['mae']:.1f}",
            f"{_pct(s['diff value']['coverage'])} ({s['diff value']['hits']}/{s['diff value']['n']})",
            f"{_pct(s['diff attainment']['coverage'])}",
        ]
    else:
        cells += ["-"] * 10
    return "| " + " | ".join(cells) + " |"


HEADER = (
    "| world | role | estimator | n | value cov | value rho | value regret@1 (/gap) | value MAE/gap "
    "| att cov | att rho | att regret@1 (pp) | att MAE (pp) | AKI cov | AKI rho | AKI regret@1 (pp) "
    "| AKI MAE (pp) | diff value cov | diff att cov |\n" + "|---" * 18 + "|"
)


def _world_detail(world: str, results: Mapping[str, _PolicyResult], band: float) -> str:
    """Per policy: truth and the twin's estimate [interval] (``*`` = missed) in each metric,
    and the paired value difference to :data:`BASELINE`."""
    from vanco_offline.ope import paired_difference

    base = results[BASELINE]
    lines = [
        f"{world}, twin (band {band:g}): truth | estimate [95 % interval], * = the interval misses the truth",
        f"{'policy':<24} {'value':>30} {'attainment':>30} {'AKI':>30} {'value - ' + BASELINE:>34}",
    ]

    def cell(t: float, e: float, i: Any, pct: bool) -> str:
        f = (lambda x: f"{x:.1%}") if pct else (lambda x: f"{x:.2f}")
        miss = " " if i.covers(t) else "*"
        return f"{f(t)} | {f(e)} [{f(i.low)}, {f(i.high)}]{miss}"

    for k, r in results.items():
        tw = r.twins[band]
        d = paired_difference(tw, base.twins[band], "value")
        dt = r.truth.value - base.truth.value
        lines.append(
            f"{k:<24} {cell(r.truth.value, tw.value, tw.interval, False):>30} "
            f"{cell(r.truth.attainment, tw.attainment, tw.attainment_interval, True):>30} "
            f"{cell(r.truth.aki_rate, tw.aki_rate, tw.aki_interval, True):>30} "
            f"{cell(dt, d.value, d.interval, False):>34}"
        )
    return "\n".join(lines)


def _run_world(
    name: str, opts: Any, worlds: WorldsSettings, algos: Mapping[str, Any], bands: Sequence[float]
) -> tuple[dict[str, _PolicyResult], float, str]:
    from vanco_pk.pk import GOTI_2018
    from vanco_pk.policies import make_policy

    from vanco_bench.ope.panel import panel
    from vanco_offline.data import convert_with
    from vanco_offline.data.cohort import generate_cohort
    from vanco_offline.ope import (
        BehaviorSettings,
        FQESettings,
        IntervalSettings,
        SimulatorTruth,
        TwinSettings,
        evaluate,
        local_prior,
        simulate_value,
        twin_estimate,
    )
    from vanco_offline.ope.behavior import fit_behavior_model
    from vanco_offline.ope.policy import ReferencePolicy, as_policy
    from vanco_offline.ope.trajectories import to_trajectories
    from vanco_offline.ope.twin import from_logs

    size, seed, gamma = opts.size, opts.seed, opts.gamma
    scenario = OPE_WORLDS[name]
    t0 = time.perf_counter()
    table = generate_cohort(size.stays, "clinician", seed=seed, scenario=scenario)
    result = convert_with(table, opts.conversion)
    traj = to_trajectories(result)
    world = opts.world(scenario)
    behavior = fit_behavior_model(traj, seed=seed) if worlds.estimators else None
    local = local_prior(table, seed=seed)
    twin = TwinSettings(
        world=world,
        n_draws=size.twin_draws,
        seed=seed,
        n_bootstrap=size.bootstrap,
        model=local,
        refitted_from=GOTI_2018,
    )
    twin = from_logs(twin, table, traj.stay_ids)
    truth_spec = SimulatorTruth(n_patients=size.truth_patients, seed=1_000_000 + seed, world=world)
    policies = [
        *panel(dict(algos)),
        (BASELINE, ReferencePolicy(make_policy("mipd", model=local), name=BASELINE)),
    ]
    results: dict[str, _PolicyResult] = {}
    for label, policy in policies:
        if worlds.estimators:
            report = evaluate(
                policy,
                result,
                table=table,
                gamma=gamma,
                estimators=worlds.estimators,
                behavior=BehaviorSettings(model=behavior, soften=opts.epsilon),
                fqe=FQESettings(n_steps=size.fqe_steps, history=opts.fqe_history, seed=seed),
                intervals=IntervalSettings(n_bootstrap=size.bootstrap),
                truth=truth_spec,
                seed=seed,
            )
            truth, softened, others = report.truth, report.truth_softened, dict(report.estimates)
        else:
            truth = simulate_value(as_policy(policy), gamma, truth_spec, result.observation_names)
            softened, others = None, {}
        estimates = {
            b: twin_estimate(
                as_policy(policy),
                table,
                traj.stay_ids,
                gamma,
                dataclasses.replace(twin, band=b),
                result.observation_names,
                traj.horizon,
            )
            for b in bands
        }
        results[label] = _PolicyResult(truth, softened, estimates, others)
        print(f"  {name}: {label} [{time.perf_counter() - t0:.0f} s]", flush=True)
    gap = results["oracle"].truth.value - results["random"].truth.value
    timing = twin.timing
    fitted = ", ".join(f"{k} {getattr(local, k):.3g}" for k in ("cl", "v1", "v2", "omega2_cl", "prop_error"))
    note = (
        f"{name}: {traj.n_stays} logged stays, refit {fitted}; level timing {timing.sampling} first "
        f"before decision {timing.first_decision + 1}, every {timing.every_h:g} h; {twin.aki.describe()}; "
        f"oracle-random gap {gap:.2f} [{time.perf_counter() - t0:.0f} s]"
    )
    return results, gap, note


def run_worlds(opts: Any, worlds: WorldsSettings) -> int:
    """The leave-one-world-out table (see the module's docstring)."""
    from vanco_bench.ope.panel import train
    from vanco_offline.data import convert_with
    from vanco_offline.data.cohort import generate_cohort
    from vanco_offline.ope.twin import TWIN_ASSUMPTIONS

    size, seed = opts.size, opts.seed
    start = time.perf_counter()
    print(
        f"OPE held out by world: settings chosen on {worlds.calibrate_on!r}, reported on "
        f"{', '.join(worlds.held_out)}. Per world: {size.stays} logged clinician stays, truth from "
        f"{size.truth_patients} fresh patients per policy, {size.twin_draws} twins per stay, "
        f"{size.bootstrap} bootstrap resamples; learned policies trained once ({size.train_steps} steps) on "
        f"{size.stays} other stays of {worlds.calibrate_on!r}; other estimators: "
        f"{', '.join(worlds.estimators) or 'none'}; band widths tried {list(worlds.bands)}; "
        f"gamma {opts.gamma:g}"
    )
    print("The twins' world (what a hospital knows):")
    for what, source in TWIN_ASSUMPTIONS.items():
        print(f"  {what}: {source}")
    t0 = time.perf_counter()
    training = convert_with(
        generate_cohort(size.stays, "clinician", seed=seed + 1, scenario=OPE_WORLDS[worlds.calibrate_on]),
        opts.conversion,
    )
    algos = train(size, training, opts.gamma, seed, names=WORLD_ALGOS)
    print(f"trained {', '.join(algos)} [{time.perf_counter() - t0:.0f} s]", flush=True)

    calib, gap, note = _run_world(worlds.calibrate_on, opts, worlds, algos, worlds.bands)
    print(note, flush=True)
    band_scores = {b: _twin_scores(calib, b, gap) for b in worlds.bands}
    chosen = choose_band(band_scores)
    print(
        f"\nCalibration world {worlds.calibrate_on!r}: the twin at each band width (chosen: {chosen:g}, the "
        f"narrowest covering >= {CHOOSE_AT:.0%} of the policies in value, attainment and the paired value "
        f"difference)"
    )
    print(HEADER)
    for b in worlds.bands:
        print(_row(worlds.calibrate_on, "calibration", f"twin (band {b:g})", band_scores[b]))
    rows = [_row(worlds.calibrate_on, "calibration", f"twin (band {chosen:g})", band_scores[chosen])]
    calib_other = {e: _other_scores(calib, e, gap) for e in worlds.estimators}
    rows += [_row(worlds.calibrate_on, "calibration", e, s) for e, s in calib_other.items()]
    details = [_world_detail(worlds.calibrate_on, calib, chosen)]
    pooled: dict[str, list[int]] = {}

    def pool(key: str, s: Mapping[str, Any]) -> None:
        hits, n = pooled.setdefault(key, [0, 0])
        pooled[key] = [hits + s["hits"], n + s["n"]]

    for name in worlds.held_out:
        results, gap, note = _run_world(name, opts, worlds, algos, (chosen,))
        print(note, flush=True)
        s = _twin_scores(results, chosen, gap)
        rows.append(_row(name, "held out", f"twin (band {chosen:g})", s))
        print(rows[-1], flush=True)
        for metric, key in (
            ("value", "twin (band)"),
            ("attainment", "twin (band) attainment"),
            ("aki_rate", "twin (band) aki"),
            ("diff value", "twin (band) difference"),
            ("diff attainment", "twin (band) attainment difference"),
        ):
            pool(key, s[metric])
        for e in worlds.estimators:
            o = _other_scores(results, e, gap)
            rows.append(_row(name, "held out", e, o))
            pool(e, o["value"])
        details.append(_world_detail(name, results, chosen))

    print(
        "\nLeave-one-world-out table (95 % intervals; value in the units of the reward, attainment and "
        "AKI in pp)"
    )
    print(HEADER)
    print("\n".join(rows))
    print(f"\nHeld-out coverage pooled over {len(worlds.held_out)} worlds (exact 95 % CI; target >= 85 %):")
    coverage = {}
    for key, (hits, n) in pooled.items():
        low, high = coverage_ci(hits, n)
        coverage[key] = hits / n
        print(f"  {key:<36} {hits}/{n} = {hits / n:.0%} ({low:.0%}-{high:.0%})")
    print("\nMEASURED_COVERAGE (held out):")
    print("{" + ", ".join(f"{k!r}: {v:.2f}" for k, v in coverage.items()) + "}")
    print("\nPer policy:")
    print("\n\n".join(details))
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    return 0
