"""`vanco-offline bench ope`: its data options and its checks before any work."""

from __future__ import annotations

import argparse
import dataclasses

import pytest
from vanco_pk.world import World


def _args(*argv: str) -> argparse.Namespace:
    from vanco_bench import ope as bench

    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser.parse_args(argv)


def test_bench_ope_data_options_follow_the_flags_and_a_presets_data_section():
    from vanco_bench.ope.options import conversion_settings, parse

    from vanco_offline.configs import load_preset
    from vanco_offline.data import ConversionSettings

    seven = ConversionSettings(action="discrete", fill_unmeasured_level=True, covariates=True)
    assert conversion_settings(_args()) == seven  # the seven-feature run, the table's reward
    flags = conversion_settings(_args("--last-dose", "--pk-features", "--reward", "exposure"))
    assert flags == dataclasses.replace(seven, last_dose=True, pk_features=True, reward="exposure")
    run = parse(_args("--last-dose", "--pk-features", "--reward", "exposure", "--scenario", "ideal"))
    assert run.world() == World.make(scenario="ideal", reward="exposure")
    # A preset's data section is the project's one spec, with discrete doses.
    default = load_preset("default").data.conversion_settings()
    assert conversion_settings(_args("--data-preset", "default")) == dataclasses.replace(
        default, action="discrete"
    )
    assert conversion_settings(_args("--data-preset", "seven_features")).reward == "default"
    with pytest.raises(ValueError, match=r"--data-preset seven_features .* 'default' reward"):
        conversion_settings(_args("--data-preset", "seven_features", "--reward", "exposure"))
    with pytest.raises(ValueError, match="unknown preset"):
        conversion_settings(_args("--data-preset", "no_such_preset"))


def test_bench_ope_rejects_bad_sizes_before_any_work():
    from vanco_bench import ope as bench

    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    for argv, message in (
        (["--quick", "--stays", "1"], "--stays must be at least 2"),
        (["--quick", "--gamma", "0"], "--gamma"),
        (["--quick", "--epsilon", "1"], "--epsilon"),
        (["--quick", "--fqe-history", "-1"], "--fqe-history"),
        (["--quick", "--data-preset", "seven_features", "--reward", "exposure"], "--data-preset"),
    ):
        with pytest.raises(ValueError, match=message):
            bench.run(parser.parse_args(argv))
