"""Full-size synthetic MIMIC-IV: write it in the PhysioNet layout, extract it, measure time and memory.

    python benchmarks/mimic_scale.py --root /tmp/mimic_scale            # 50,000 stays, >= 30 M chartevents
    python benchmarks/mimic_scale.py --root /tmp/mimic_small --stays 2000 --chart-per-stay 100   # a quick run

Writes ``hosp/`` and ``icu/`` as Parquet (the tables and columns ``extract mimic`` reads,
plus filler rows of other itemids so that the large tables have their real shape), in
chunks of ``--chunk`` stays through ``pyarrow.parquet.ParquetWriter`` (bounded memory),
then runs ``vanco-offline extract mimic`` on it in a child process and prints its wall time
and peak resident memory (``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``), and deletes
the generated files unless ``--keep``. The numbers go in docs/mimic.md.

The cohort: stays of 1-10 days; 40 % receive IV vancomycin q12h (inputevents counted in
"dose" with a 1,000 mg order in prescriptions, 70 % of the doses also in eMAR with 0-45 min
of charting lag, a tenth of the courses begun on the ward the day before ICU admission),
5 % oral vancomycin in "09-Antibiotics (Non IV)"; labs daily (creatinine, BUN, WBC) and a
trough every 48 h; vitals hourly; 5 % on dialysis.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

BASE = np.datetime64("2150-01-01T00:00:00", "s")
H = np.timedelta64(3600, "s")


class Writers:
    """One ParquetWriter per table, appended chunk by chunk."""

    def __init__(self, root: Path):
        self.root, self.writers, self.rows = root, {}, {}

    def add(self, module: str, name: str, columns: dict[str, np.ndarray]) -> None:
        table = pa.table(columns)
        if name not in self.writers:
            path = self.root / module / f"{name}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            self.writers[name] = pq.ParquetWriter(path, table.schema)
            self.rows[name] = 0
        self.writers[name].write_table(table)
        self.rows[name] += table.num_rows

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


def chunk(w: Writers, rng: np.random.Generator, first: int, n: int, chart_per_stay: int) -> None:
    ids = np.arange(first, first + n)
    subject, hadm, stay = 10_000_000 + ids, 20_000_000 + ids, 30_000_000 + ids
    intime = BASE + (ids * 6 * 3600 + rng.integers(0, 3600, n)).astype("timedelta64[s]")
    los_h = rng.uniform(24, 240, n)
    outtime = intime + (los_h * 3600).astype("timedelta64[s]")
    w.add(
        "icu",
        "icustays",
        dict(
            subject_id=subject,
            hadm_id=hadm,
            stay_id=stay,
            first_careunit=np.full(n, "MICU"),
            intime=intime,
            outtime=outtime,
            los=los_h / 24,
        ),
    )
    w.add(
        "hosp",
        "patients",
        dict(
            subject_id=subject,
            gender=rng.choice(["F", "M"], n),
            anchor_age=rng.integers(18, 91, n),
            anchor_year=np.full(n, 2150),
        ),
    )
    # vitals hourly (HR, SBP, temperature) and filler items, chart_per_stay rows per stay
    k = np.arange(chart_per_stay)
    items = np.array([220045, 220179, 223762, 220210, 220277])
    sid = np.repeat(stay, chart_per_stay)
    hour = np.tile((k // len(items)) % 240, n)
    t = np.repeat(intime, chart_per_stay) + (hour * 3600 + rng.integers(0, 600, sid.size)).astype(
        "timedelta64[s]"
    )
    item = np.tile(items[k % len(items)], n)
    value = np.where(
        item == 220045,
        rng.normal(85, 15, sid.size),
        np.where(
            item == 220179,
            rng.normal(120, 20, sid.size),
            np.where(item == 223762, rng.normal(37.2, 0.7, sid.size), rng.normal(20, 5, sid.size)),
        ),
    )
    w.add(
        "icu",
        "chartevents",
        dict(
            subject_id=sid - 20_000_000,
            hadm_id=sid - 10_000_000,
            stay_id=sid,
            charttime=t,
            itemid=item,
            value=value.round(1).astype(str),
            valuenum=value.round(1),
        ),
    )
    # labs daily at 05:00 from one day before ICU admission, plus filler items
    days = 12
    lab_sid = np.repeat(ids, days * 5)
    day = np.tile(np.repeat(np.arange(-1, days - 1), 5), n)
    lab_item = np.tile(np.array([50912, 51006, 51301, 50983, 50971]), n * days)
    lab_t = (
        intime[lab_sid - first].astype("datetime64[D]")
        + day.astype("timedelta64[D]")
        + np.timedelta64(5, "h")
    )
    lab_v = np.where(
        lab_item == 50912, rng.lognormal(0, 0.4, lab_sid.size), rng.normal(20, 5, lab_sid.size)
    ).round(2)
    w.add(
        "hosp",
        "labevents",
        dict(
            labevent_id=lab_sid * 100 + np.arange(lab_sid.size) % 100,
            subject_id=10_000_000 + lab_sid,
            hadm_id=20_000_000 + lab_sid,
            itemid=lab_item,
            charttime=lab_t.astype("datetime64[s]"),
            valuenum=lab_v,
        ),
    )
    # vancomycin: 40 % of stays, q12h for up to 5 days; a tenth begun on the ward the day before
    vanco = ids[rng.random(n) < 0.4]
    ward = rng.random(vanco.size) < 0.1
    start = (
        intime[vanco - first]
        + (rng.integers(1, 6, vanco.size) * 3600).astype("timedelta64[s]")
        - np.where(ward, 24 * H, 0)
    )
    n_doses = rng.integers(2, 11, vanco.size)
    dose_of = np.repeat(np.arange(vanco.size), n_doses)
    dose_k = np.concatenate([np.arange(m) for m in n_doses])
    dose_t = start[dose_of] + (dose_k * 12 * 3600 + rng.integers(0, 1800, dose_of.size)).astype(
        "timedelta64[s]"
    )
    who = vanco[dose_of]
    in_icu = (dose_t >= intime[who - first]) & (dose_t < outtime[who - first])
    icu = np.flatnonzero(in_icu)
    w.add(
        "icu",
        "inputevents",
        dict(
            subject_id=10_000_000 + who[icu],
            hadm_id=20_000_000 + who[icu],
            stay_id=30_000_000 + who[icu],
            starttime=dose_t[icu],
            endtime=dose_t[icu] + 2 * H,
            itemid=np.full(icu.size, 225798),
            amount=np.ones(icu.size),
            amountuom=np.full(icu.size, "dose"),
            statusdescription=np.full(icu.size, "FinishedRunning"),
            ordercategoryname=np.full(icu.size, "08-Antibiotics (IV)"),
            orderid=np.arange(icu.size) + first * 100,
            patientweight=np.round(rng.normal(80, 15, icu.size), 1),
        ),
    )
    w.add(
        "hosp",
        "prescriptions",
        dict(
            subject_id=10_000_000 + vanco,
            hadm_id=20_000_000 + vanco,
            pharmacy_id=vanco,
            drug=np.full(vanco.size, "Vancomycin"),
            starttime=start.astype("datetime64[h]").astype("datetime64[s]"),
            stoptime=start + 150 * H,
            dose_val_rx=np.full(vanco.size, "1000"),
            dose_unit_rx=np.full(vanco.size, "mg"),
            route=np.full(vanco.size, "IV"),
        ),
    )
    charted = np.flatnonzero((rng.random(dose_of.size) < 0.7) | ~in_icu)
    emar_id = np.array([f"{10_000_000 + s}-{j}" for j, s in enumerate(who[charted])])
    w.add(
        "hosp",
        "emar",
        dict(
            subject_id=10_000_000 + who[charted],
            hadm_id=20_000_000 + who[charted],
            emar_id=emar_id,
            charttime=dose_t[charted] + rng.integers(0, 2700, charted.size).astype("timedelta64[s]"),
            medication=np.full(charted.size, "Vancomycin"),
            event_txt=np.full(charted.size, "Administered"),
            pharmacy_id=who[charted],
        ),
    )
    w.add(
        "hosp",
        "emar_detail",
        dict(
            emar_id=np.repeat(emar_id, 2),
            parent_field_ordinal=np.tile(np.array([np.nan, 1.1]), charted.size),
            dose_due=np.tile(np.array(["1000", None], dtype=object), charted.size),
            dose_due_unit=np.tile(np.array(["mg", None], dtype=object), charted.size),
            dose_given=np.tile(np.array([None, "1000"], dtype=object), charted.size),
            dose_given_unit=np.tile(np.array([None, "mg"], dtype=object), charted.size),
            route=np.full(2 * charted.size, None, dtype=object),
        ),
    )
    # troughs every 48 h of the course
    lv = np.flatnonzero(dose_k % 4 == 3)
    w.add(
        "hosp",
        "labevents_levels",
        dict(
            labevent_id=np.arange(lv.size),
            subject_id=10_000_000 + who[lv],
            hadm_id=20_000_000 + who[lv],
            itemid=np.full(lv.size, 51009),
            charttime=dose_t[lv] - H,
            valuenum=rng.uniform(5, 25, lv.size).round(1),
        ),
    )
    oral = ids[rng.random(n) < 0.05]
    w.add(
        "icu",
        "inputevents_oral",
        dict(
            subject_id=10_000_000 + oral,
            hadm_id=20_000_000 + oral,
            stay_id=30_000_000 + oral,
            starttime=intime[oral - first] + 3 * H,
            endtime=intime[oral - first] + 4 * H,
            itemid=np.full(oral.size, 225798),
            amount=np.ones(oral.size),
            amountuom=np.full(oral.size, "dose"),
            statusdescription=np.full(oral.size, "FinishedRunning"),
            ordercategoryname=np.full(oral.size, "09-Antibiotics (Non IV)"),
            orderid=np.arange(oral.size),
            patientweight=np.full(oral.size, 70.0),
        ),
    )
    dial = ids[rng.random(n) < 0.05]
    w.add(
        "icu",
        "procedureevents",
        dict(
            subject_id=10_000_000 + dial,
            stay_id=30_000_000 + dial,
            starttime=intime[dial - first],
            endtime=outtime[dial - first],
            itemid=np.full(dial.size, 225802),
        ),
    )
    w.add(
        "hosp",
        "omr",
        dict(
            subject_id=subject,
            chartdate=intime.astype("datetime64[D]"),
            seq_num=np.ones(n, dtype=np.int64),
            result_name=np.full(n, "Height (Inches)"),
            result_value=np.round(rng.normal(67, 4, n), 1).astype(str),
        ),
    )


def merge_parts(root: Path) -> None:
    """Fold the side files (levels, oral rows) into their tables, streaming through DuckDB."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET memory_limit = '1GB'")
    for table, part in (
        ("hosp/labevents", "hosp/labevents_levels"),
        ("icu/inputevents", "icu/inputevents_oral"),
    ):
        main, side, out = (root / f"{table}.parquet", root / f"{part}.parquet", root / f"{table}.all.parquet")
        con.execute(
            f"COPY (SELECT * FROM read_parquet('{main}') "
            f"UNION ALL BY NAME SELECT * FROM read_parquet('{side}')) "
            f"TO '{out}' (FORMAT parquet)"
        )
        os.replace(out, main)
        side.unlink()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", required=True, type=Path, help="folder to write (must not exist)")
    parser.add_argument("--stays", type=int, default=50_000)
    parser.add_argument("--chart-per-stay", type=int, default=620)
    parser.add_argument("--chunk", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory-limit", default="2GB")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    args = parser.parse_args()
    if args.root.exists():
        parser.error(f"--root {args.root} exists; give a new folder")
    rng = np.random.default_rng(args.seed)
    t = time.perf_counter()
    writers = Writers(args.root)
    try:
        for first in range(0, args.stays, args.chunk):
            chunk(writers, rng, first, min(args.chunk, args.stays - first), args.chart_per_stay)
    finally:
        writers.close()
    merge_parts(args.root)
    generated = time.perf_counter() - t
    size = sum(p.stat().st_size for p in args.root.rglob("*.parquet"))
    rows = dict(writers.rows)
    out = args.root.with_name(args.root.name + "_stays.parquet")
    command = [
        sys.executable,
        "-m",
        "vanco_offline.cli",
        "extract",
        "mimic",
        "--mimic-dir",
        str(args.root),
        "--out",
        str(out),
        "--fill-missing-vitals",
        "--memory-limit",
        args.memory_limit,
        "--json",
    ]
    t = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - t
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if done.returncode != 0:
        print(done.stderr[-3000:], file=sys.stderr)
        return done.returncode
    report = json.loads(done.stdout)
    print(
        json.dumps(
            {
                "stays": args.stays,
                "rows_written": rows,
                "parquet_mb": round(size / 2**20),
                "generate_s": round(generated, 1),
                "extract_wall_s": round(wall, 1),
                "extract_peak_rss_mb": round(peak_mb),
                "memory_limit": args.memory_limit,
                "stays_kept": report["stays_kept"],
                "table_rows": report["rows"],
                "doses_used": report["doses_used"],
                "doses_left_out": report["doses_left_out"],
                "stays_dropped": report["stays_dropped"],
                "cpus": os.cpu_count(),
            },
            indent=1,
        )
    )
    if not args.keep:
        shutil.rmtree(args.root)
        for path in out.parent.glob(out.name.removesuffix(".parquet") + "*"):
            path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
