"""The batched patient simulator behind both Gymnasium environments.

:class:`BatchSimulator` holds ``P`` patients as numpy arrays and advances them one decision
interval at a time: PK (closed form, :mod:`vanco_pk.pk`), kidney (:mod:`vanco_pk.kidney`),
infection (:mod:`vanco_pk.infection`), then the observation a clinician would see. It
draws no random numbers itself: each patient's episode is a pure function of one row of
standard normals (``world.draws_per_episode`` of them) that the environment draws from
that patient's own generator, so a patient simulated alone or among 1000 others gives the
same numbers.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from vanco_pk import kidney as kd
from vanco_pk import scenario_rules
from vanco_pk.infection import burden_step, vital_signs
from vanco_pk.patients import (
    N_PATIENT_DRAWS,
    Covariates,
    Patients,
)
from vanco_pk.pk import PKParams, infusion_duration_h, interval_auc, propagate
from vanco_pk.scenario import SAMPLING_PROTOCOLS
from vanco_pk.targets import AKI_ABSOLUTE_WINDOW_H, COVARIATES, FEATURES
from vanco_pk.world import N_STEP_DRAWS, World

__all__ = ["EXTENDED_FEATURES", "N_STEP_DRAWS", "BatchSimulator"]

#: Observation names with ``extended_obs=True``: the seven features, the covariates, then
#: hours since the last measured level and the last dose (mg).
EXTENDED_FEATURES: tuple[str, ...] = (*FEATURES, *COVARIATES, "hours_since_level", "last_dose_mg")
_TRAITS = (
    "kidney_sensitivity",
    "growth_scale",
    "wbc_base",
    "temperature_base",
    "heart_rate_base",
    "sbp_base",
)
#: Highest level the assay reports (mg/L); true concentrations above it are in ``info``.
LEVEL_REPORT_MAX = 1000.0


class BatchSimulator:
    """``P`` simulated ICU patients on vancomycin, advanced together (numpy over patients)."""

    def __init__(self, n: int, world: World):
        self.n = int(n)
        self.world = world
        scenario = world.scenario
        self.scenario = scenario
        self.truth = scenario.model
        self._crcl_cap = min(self.truth.crcl_cap, scenario.crcl_cap or np.inf)
        self._level_error = (
            self.truth.prop_error if scenario.level_prop_error is None else scenario.level_prop_error,
            self.truth.add_error_mg_l
            if scenario.level_add_error_mg_l is None
            else scenario.level_add_error_mg_l,
        )
        h = world.decision_interval_h
        # Trailing AUC24 = the last `n_full` whole intervals + part of one straddling t - 24 h.
        self._window = int(np.ceil(24.0 / h - 1e-9))
        self._n_full = int(np.floor(24.0 / h + 1e-9))
        self._straddle_from = self._window * h - 24.0  # local start of the part inside the window
        self._kdigo_lags = int(np.floor(AKI_ABSOLUTE_WINDOW_H / h + 1e-9))
        self._allocate()

    # --- episode start ---------------------------------------------------------------------

    def reset(
        self,
        index: np.ndarray,
        normals: np.ndarray,
        fixed: Patients | Covariates | None = None,
    ) -> None:
        """Start new episodes for the patients at ``index`` from their rows of ``normals``.

        ``fixed`` (one entry per index) replaces the drawn patients: a :class:`Patients`
        fixes everything, :class:`Covariates` only the covariates.
        """
        world = self.world
        index = np.asarray(index, dtype=np.intp)
        normals = np.asarray(normals, dtype=np.float64)
        if normals.shape != (len(index), world.draws_per_episode):
            raise ValueError(
                f"normals must have shape ({len(index)}, {world.draws_per_episode}); got {normals.shape}"
            )
        n_world = world.world_draws
        base = normals[:, : normals.shape[1] - n_world]
        extra = normals[:, normals.shape[1] - n_world :]
        if isinstance(fixed, Patients):
            new = fixed
        else:
            population = scenario_rules.scenario_population(world.population, self.scenario)
            new = Patients.from_normals(base[:, :N_PATIENT_DRAWS], population, covariates=fixed)
            if n_world and fixed is None:
                arc = scenario_rules.arc_factor(self.scenario, new.covariates.age, extra[:, :2])
                new = scenario_rules.apply_arc(new, arc)
        if len(new) != len(index):
            raise ValueError(f"fixed patients: {len(new)} given for {len(index)} episodes")
        self._set_patients(index, new)
        if n_world:
            k = scenario_rules.N_WORLD_PATIENT_DRAWS
            self.world_patient[index] = extra[:, :k]
            shape = (len(index), world.n_steps + 1, scenario_rules.N_WORLD_STEP_DRAWS)
            self.world_noise[index] = extra[:, k:].reshape(shape)
        self._start(
            index, new, base[:, N_PATIENT_DRAWS:].reshape(len(index), world.n_steps + 1, N_STEP_DRAWS)
        )

    def _allocate(self) -> None:
        n = self.n
        z = np.zeros
        self.traits = {name: z(n) for name in _TRAITS}
        self.covariates = {name: z(n) for name in (*COVARIATES, "creatinine")}
        self.noise = z((n, self.world.n_steps + 1, N_STEP_DRAWS))
        self.world_patient = z((n, scenario_rules.N_WORLD_PATIENT_DRAWS))
        self.world_noise = z((n, self.world.n_steps + 1, scenario_rules.N_WORLD_STEP_DRAWS))
        self.request = z(n, dtype=bool)
        self.protocol = np.full(n, SAMPLING_PROTOCOLS.index(self.world.scenario.sampling))
        self.step_count = z(n, dtype=np.int64)
        for name in (
            "cl_coef",
            "cl",
            "v1",
            "v1_base",
            "v2",
            "q",
            "a1",
            "a2",
            "burden",
            "time_h",
            "level",
            "hours_since_level",
            "last_dose",
            "auc24",
            "trough",
            "peak",
            "interval_auc",
            "infusion_h",
            "drawn_conc",
            "draw_early_h",
            "drawn_peak",
            "peak_level",
            "peak_collected_h",
            "iov",
            "rrt_cl",
            "ihd_phase_h",
            "scr_obs",
            "scr_baseline_obs",
            "doses_since_change",
            "aki_events",
        ):
            setattr(self, name, z(n))
        for name in (
            "ever_dosed",
            "level_measured",
            "aki",
            "aki_so_far",
            "ever_level",
            "level_since_change",
            "on_crrt",
        ):
            setattr(self, name, z(n, dtype=bool))
        self.aki_stage = z(n, dtype=np.int64)
        self.obs = z((n, len(FEATURES)))
        ones = np.ones(n)
        self.kidney = kd.baseline_kidney(ones, ones, ones, ones, z(n), self.world.kidney)
        self.scr_history = z((n, self._kdigo_lags))
        # Per interval in the AUC window: AUC, start amounts, dose, infusion time, clearance.
        self.history = z((6, n, self._window))

    def _set_patients(self, index: np.ndarray, new: Patients) -> None:
        for name in _TRAITS:
            self.traits[name][index] = getattr(new, name)
        for name, arr in self.covariates.items():
            arr[index] = getattr(new.covariates, name)

    def _start(self, index: np.ndarray, new: Patients, noise: np.ndarray) -> None:
        truth, world = self.truth, self.world
        cov = new.covariates
        crcl = cov.crcl(self._crcl_cap)
        eta = new.eta(truth)
        explicit_rrt = self.scenario.dialysis == "ihd_crrt"
        dial_cl = 1.0 if explicit_rrt else truth.dialysis_cl_factor**cov.dialysis
        self.cl_coef[index] = truth.cl * np.exp(eta[:, 0]) * dial_cl / truth.crcl_ref**truth.crcl_exponent
        wz = self.world_patient[index]
        self.on_crrt[index] = (cov.dialysis == 1) & (ndtr(wz[:, 2]) < self.scenario.crrt_fraction)
        self.ihd_phase_h[index] = ndtr(wz[:, 3]) * self.scenario.ihd_every_h
        self.iov[index] = np.exp(self.scenario.iov_cl_sd * self.world_noise[index, 0, 1])
        self.v1[index] = truth.v1 * cov.weight_kg / truth.weight_ref * truth.dialysis_v1_factor**cov.dialysis
        self.v1[index] *= np.exp(eta[:, 1])
        self.v1_base[index] = self.v1[index]
        self.v1[index] *= self._sepsis_volume(np.zeros(len(index)))
        self.v2[index] = truth.v2 * np.exp(eta[:, 2])
        self.q[index] = truth.q
        base = kd.baseline_kidney(
            crcl, cov.creatinine, new.bun_ratio, cov.weight_kg, cov.dialysis, world.kidney
        )
        for name in (
            "injury",
            "creatinine",
            "bun",
            "native_gfr0",
            "rrt_clearance",
            "creatinine0",
            "bun0",
            "volume_l",
        ):
            getattr(self.kidney, name)[index] = getattr(base, name)
        scr0 = cov.creatinine * (1.0 + self.scenario.creatinine_assay_cv * self.world_noise[index, 0, 3])
        self.scr_obs[index] = scr0
        self.scr_baseline_obs[index] = scr0
        self.scr_history[index] = scr0[:, None]
        self.noise[index] = noise
        self.step_count[index] = 0
        self.burden[index] = new.burden0
        for name in (
            "a1",
            "a2",
            "time_h",
            "hours_since_level",
            "last_dose",
            "auc24",
            "trough",
            "peak",
            "interval_auc",
            "infusion_h",
            "drawn_conc",
            "draw_early_h",
            "peak_collected_h",
            "doses_since_change",
            "aki_events",
        ):
            getattr(self, name)[index] = 0.0
        self.level[index] = np.nan
        self.peak_level[index] = np.nan
        self.drawn_peak[index] = np.nan
        for name in (
            "ever_dosed",
            "level_measured",
            "aki",
            "aki_so_far",
            "ever_level",
            "level_since_change",
            "request",
        ):
            getattr(self, name)[index] = False
        self.aki_stage[index] = 0
        self.history[:, index] = 0.0
        self.history[4, index] = 1.0  # infusion time of the drug-free past; keeps rates finite
        self.rrt_cl[index] = self._rrt_clearance()[index]
        self.cl[index] = self._clearance()[index]
        self.history[5, index] = self.cl[index, None]
        self._observe(index)

    # --- one decision interval ---------------------------------------------------------------

    def _clearance(self) -> np.ndarray:
        # Drug CL follows the creatinine clearance now (native GFR + dialysis), as in Goti 2018;
        # with explicit dialysis the machine's clearance is added to the native kidneys'.
        if self.scenario.dialysis == "ihd_crrt":
            crcl = np.minimum(self.kidney.gfr, self._crcl_cap)
            return self.iov * self.cl_coef * np.maximum(crcl, 1e-3) ** self.truth.crcl_exponent + self.rrt_cl
        crcl = np.minimum(self.kidney.clearance, self._crcl_cap)
        cl = self.cl_coef * crcl**self.truth.crcl_exponent
        return cl * self.iov if self.world.world_draws else cl

    def _sepsis_volume(self, time_h: np.ndarray) -> np.ndarray:
        """V1's multiplier at ``time_h`` (:attr:`Scenario.sepsis_v1_excess`; 1 when off)."""
        sc = self.scenario
        return 1.0 + sc.sepsis_v1_excess * 0.5 ** (np.asarray(time_h) / sc.sepsis_v1_half_life_h)

    def _rrt_clearance(self) -> np.ndarray:
        """Extracorporeal drug clearance (L/h) over the next interval (explicit dialysis only)."""
        if self.scenario.dialysis != "ihd_crrt":
            return np.zeros(self.n)
        return scenario_rules.dialysis_drug_clearance(
            self.scenario,
            self.covariates["dialysis"] == 1,
            self.on_crrt,
            self.covariates["weight_kg"],
            self.ihd_phase_h,
            self.time_h,
            self.world.decision_interval_h,
        )

    def pk_params(self) -> PKParams:
        """True individual parameters now; they govern the next interval."""
        return PKParams(self.cl, self.v1, self.v2, self.q)

    def step(self, dose_mg: np.ndarray) -> None:
        """Give ``dose_mg`` (shape (P,), in [0, 3000]) and advance every patient one interval."""
        world = self.world
        h = world.decision_interval_h
        dose = np.asarray(dose_mg, dtype=np.float64)
        t_inf = infusion_duration_h(dose)
        params = self.pk_params()
        start_a1, start_a2 = self.a1, self.a2
        out = propagate(params, start_a1, start_a2, dose, t_inf, h)
        step_next = np.minimum(self.step_count + 1, world.n_steps)
        rows = np.arange(self.n)
        wz = self.world_noise[rows, step_next]
        if self.scenario.draw_time_sd_h > 0:
            # The chart says the trough was drawn at the decision; it was drawn a little earlier.
            early = scenario_rules.draw_time_early_h(self.scenario, wz[:, 2], h - t_inf)
            self.drawn_conc = propagate(params, start_a1, start_a2, dose, t_inf, h - early).trough
            self.draw_early_h = early
        else:
            self.drawn_conc = out.trough
        self.drawn_peak = self._peak_draw(params, start_a1, start_a2, dose, t_inf, wz[:, 4])
        hist = self.history
        hist[:, :, 1:] = hist[:, :, :-1]
        for row, value in enumerate((out.auc, start_a1, start_a2, dose, t_inf, params.cl)):
            hist[row, :, 0] = value
        auc24 = hist[0, :, : self._n_full].sum(axis=1)
        if self._n_full < self._window:
            k = self._window - 1
            old = PKParams(hist[5, :, k], self.v1, self.v2, self.q)
            before = interval_auc(
                old, hist[1, :, k], hist[2, :, k], hist[3, :, k], hist[4, :, k], self._straddle_from
            )
            auc24 = auc24 + hist[0, :, k] - before
        traits = self.traits
        graded = self.scenario.aki == "graded"
        zero = np.zeros(self.n)
        self.kidney = kd.kidney_step(
            self.kidney,
            zero if graded else auc24,
            zero if graded else out.trough,
            traits["kidney_sensitivity"],
            h,
            world.kidney,
        )
        if graded:
            event = scenario_rules.aki_events(self.scenario, auc24, h, wz[:, 0])
            injury = self.kidney.injury
            hit = np.minimum(injury + self.scenario.aki_injury * (1.0 - injury), world.kidney.max_injury)
            self.kidney.injury = np.where(event, hit, injury)
            self.aki_events = self.aki_events + event
        changed = dose != self.last_dose
        self.doses_since_change = np.where(changed, 1.0, self.doses_since_change + 1.0)
        self.level_since_change = self.level_since_change & ~changed
        if self.scenario.iov_cl_sd > 0:
            occasion = np.floor((self.time_h + h) / self.scenario.iov_occasion_h + 1e-9)
            new_occasion = occasion > np.floor(self.time_h / self.scenario.iov_occasion_h + 1e-9)
            self.iov = np.where(new_occasion, np.exp(self.scenario.iov_cl_sd * wz[:, 1]), self.iov)
        self.burden = burden_step(
            self.burden, out.auc * (24.0 / h), traits["growth_scale"], h, world.infection
        )
        self.a1, self.a2 = out.central_mg, out.peripheral_mg
        self.auc24, self.trough, self.peak, self.interval_auc = auc24, out.trough, out.peak, out.auc
        self.infusion_h = t_inf
        self.time_h = self.time_h + h
        if self.scenario.sepsis_v1_excess > 0:
            self.v1 = self.v1_base * self._sepsis_volume(self.time_h)
        self.rrt_cl = self._rrt_clearance()
        self.cl = self._clearance()
        self.hours_since_level = self.hours_since_level + h
        self.last_dose = dose
        self.ever_dosed = self.ever_dosed | (dose > 0)
        self.step_count = self.step_count + 1
        self._measure()
        self._observe(np.arange(self.n))

    def _peak_draw(self, params, a1, a2, dose, t_inf, z) -> np.ndarray:
        """True concentration at the real time of a peak draw in this interval (NaN where the
        protocol draws none or the documented time falls outside the interval).

        The protocol orders it ``auc_peak_offset_h`` after the end of the infusion; the real
        draw is earlier by the same draw-time error as a trough (never before the infusion
        ends), and the chart records the real collection time (``info["peak_offset_h"]``), as
        a laboratory system does.
        """
        offset = self.scenario.auc_peak_offset_h
        auc = self.protocol == SAMPLING_PROTOCOLS.index("auc_guided")
        if offset is None or not np.any(auc):
            return np.full(self.n, np.nan)
        h = self.world.decision_interval_h
        early = scenario_rules.draw_time_early_h(self.scenario, z, np.full(self.n, offset))
        self.peak_collected_h = np.minimum(offset - early, h - t_inf)
        at = propagate(params, a1, a2, dose, t_inf, t_inf + self.peak_collected_h).trough
        return np.where(auc & (t_inf + offset < h), at, np.nan)

    def set_sampling(self, protocols) -> None:
        """Give each patient its own level protocol (names of :data:`vanco_pk.scenario.SAMPLING_PROTOCOLS`).

        The monitoring protocol follows the team that doses: a trough-guided clinician and
        AUC-guided software order levels differently. Kept across episodes.
        """
        names = np.broadcast_to(np.asarray(protocols, dtype=object), (self.n,))
        bad = [str(x) for x in names if x not in SAMPLING_PROTOCOLS]
        if bad:
            raise ValueError(
                f"unknown sampling protocol {bad[0]!r}; choose one of {list(SAMPLING_PROTOCOLS)}"
            )
        self.protocol = np.array([SAMPLING_PROTOCOLS.index(x) for x in names])

    def request_levels(self, request: np.ndarray) -> None:
        """Ask for a trough at the end of the next interval (one flag per patient), on top of the protocol."""
        self.request = np.asarray(request, dtype=bool).reshape(self.n).copy()

    def _measure(self) -> None:
        world = self.world
        rows = np.arange(self.n)
        step = np.minimum(self.step_count, world.n_steps)
        z = self.noise[rows, step]
        ordered = self.request | scenario_rules.levels_ordered(
            self.scenario,
            self.protocol,
            self.step_count,
            self.ever_level,
            self.hours_since_level,
            self.doses_since_change,
            self.level_since_change,
        )
        self.request = np.zeros(self.n, dtype=bool)
        measured = ordered & (ndtr(z[:, 2]) >= world.level_missing_prob)
        prop, add = self._level_error
        noisy = self.drawn_conc * (1.0 + world.measurement_noise * prop * z[:, 0])
        noisy = np.clip(noisy + world.measurement_noise * add * z[:, 1], 0.0, LEVEL_REPORT_MAX)
        # A drug-free sample reads 0 (below the assay's limit), not additive noise.
        noisy = np.where(self.ever_dosed, noisy, 0.0)
        self.level = np.where(measured, noisy, self.level)
        # AUC-guided monitoring: the first trough comes with a peak from the same interval.
        first = measured & ~self.ever_level & np.isfinite(self.drawn_peak) & self.ever_dosed
        wz = self.world_noise[rows, step]
        peak = self.drawn_peak * (1.0 + world.measurement_noise * prop * wz[:, 5])
        peak = np.clip(peak + world.measurement_noise * add * wz[:, 6], 0.0, LEVEL_REPORT_MAX)
        self.peak_level = np.where(first, peak, np.nan)
        self.hours_since_level = np.where(measured, 0.0, self.hours_since_level)
        self.level_measured = measured
        self.ever_level = self.ever_level | measured
        self.level_since_change = self.level_since_change | measured
        # KDIGO from the measured creatinine: rise >= 0.3 mg/dL over the lowest value of the
        # last 48 h, or >= 1.5 x the first measured value.
        cv = self.scenario.creatinine_assay_cv
        scr = self.kidney.creatinine
        if cv:
            scr = scr * (1.0 + cv * self.world_noise[rows, step, 3])
        self.scr_obs = scr
        recent = np.minimum(self.scr_history.min(axis=1, initial=np.inf), scr)
        self.aki_stage = kd.kdigo_stage(scr, self.scr_baseline_obs if cv else self.kidney.creatinine0, recent)
        self.aki = self.aki_stage > 0
        self.aki_so_far = self.aki_so_far | self.aki
        if self._kdigo_lags:
            self.scr_history[:, 1:] = self.scr_history[:, :-1]
            self.scr_history[:, 0] = scr

    def _observe(self, index: np.ndarray) -> None:
        z = self.noise[index, np.minimum(self.step_count[index], self.world.n_steps), 3:]
        t = self.traits
        wbc, temp, hr, sbp = vital_signs(
            self.burden[index],
            t["wbc_base"][index],
            t["temperature_base"][index],
            t["heart_rate_base"][index],
            t["sbp_base"][index],
            z,
            self.world.infection,
        )
        obs = self.obs
        obs[index, 0] = self.level[index]
        obs[index, 1] = self.scr_obs[index]
        obs[index, 2] = wbc
        obs[index, 3] = self.kidney.bun[index]
        obs[index, 4] = temp
        obs[index, 5] = sbp
        obs[index, 6] = hr

    # --- what the environments read -----------------------------------------------------------

    @property
    def truncated(self) -> np.ndarray:
        return self.step_count >= self.world.n_steps

    def raw_observation(self) -> np.ndarray:
        """The seven features (float64); the level is NaN while never measured."""
        return self.obs.copy()

    def observation(self, extended: bool) -> np.ndarray:
        """The observation as the env returns it (float32, never-measured level shown as 0)."""
        obs = np.nan_to_num(self.obs, nan=0.0)
        if extended:
            obs = np.column_stack(
                [obs, *(self.covariates[name] for name in COVARIATES), self.hours_since_level, self.last_dose]
            )
        return obs.astype(np.float32)

    def info(self) -> dict[str, np.ndarray | dict[str, np.ndarray]]:
        """True state per patient (arrays of shape (P,)); see :class:`vanco_pk.env.VancoPKEnv`."""
        params = self.pk_params()
        k = self.kidney
        cov = self.covariates
        return {
            "auc24": self.auc24,
            "trough": self.trough,
            "peak": self.peak,
            "interval_auc": self.interval_auc,
            "cl": params.cl,
            "v1": params.v1,
            "v2": params.v2,
            "q": params.q,
            "central_mg": self.a1,
            "peripheral_mg": self.a2,
            "gfr": k.gfr,
            "crcl": k.clearance,
            "creatinine_true": k.creatinine,
            "bun_true": k.bun,
            "kidney_injury": k.injury,
            "aki": self.aki,
            "aki_stage": self.aki_stage,
            "aki_so_far": self.aki_so_far,
            "aki_events": self.aki_events,
            "draw_early_h": self.draw_early_h,
            "peak_measured": np.isfinite(self.peak_level),
            "peak_level": np.nan_to_num(self.peak_level, nan=0.0),
            "peak_offset_h": np.where(np.isfinite(self.peak_level), self.peak_collected_h, 0.0),
            "burden": self.burden,
            "infection_resolved": self.burden < self.world.infection.resolved_burden,
            "dose_mg": self.last_dose,
            "infusion_h": self.infusion_h,
            "level_measured": self.level_measured,
            "level_known": np.isfinite(self.obs[:, 0]),
            "raw_level": np.nan_to_num(self.obs[:, 0], nan=0.0),
            "time_h": self.time_h,
            "covariates": {
                **{name: cov[name].copy() for name in COVARIATES},
                "baseline_creatinine": cov["creatinine"].copy(),
            },
        }
