"""``vanco-offline train``: train a policy from a packaged preset or a YAML file."""

from __future__ import annotations

import argparse

from vanco_offline.commands.common import add_data_argument, format_metrics, quiet_d3rlpy, read_table_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from vanco_offline.configs.presets import available_presets

    parser.add_argument(
        "--config",
        default="default",
        metavar="PRESET_OR_YAML",
        help=f"a packaged preset ({', '.join(available_presets())}) "
        "or a YAML file that may `extends:` one (default: default)",
    )
    add_data_argument(parser)
    parser.add_argument("--steps", type=int, default=None, help="override the preset's gradient steps")
    parser.add_argument(
        "--experiment",
        default=None,
        help="run folder name under --log-dir: a plain name, created for this run alone (an existing one is "
        "an error); default <preset>_<timestamp>",
    )
    parser.add_argument(
        "--log-dir", default="d3rlpy_logs", help="where logs and the model go (default d3rlpy_logs)"
    )
    parser.add_argument(
        "--impute-max-age-h",
        type=float,
        default=None,
        help="carry a missing value forward within a stay for at most this many hours",
    )
    parser.add_argument(
        "--draw-cost",
        type=float,
        default=None,
        metavar="LAMBDA",
        help="a preset with a draw head (residual_draw): the cost of a level in log AUC per draw (default: "
        "chosen on the validation stays so that the head draws as often as the logs)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--device", default="cpu", help="torch device to train on: cpu, cuda, cuda:N, mps (default cpu)"
    )


def run(args: argparse.Namespace) -> int:
    from vanco_offline.algos.device import check_device
    from vanco_offline.configs import load_preset
    from vanco_offline.progress import show_progress
    from vanco_offline.training import train

    device = check_device(args.device)
    if args.quiet:
        quiet_d3rlpy()
    preset = load_preset(args.config)
    table, source = read_table_argument(args)
    result = train(
        preset,
        table,
        data_source=source,
        n_steps=args.steps,
        impute_max_age_h=args.impute_max_age_h,
        experiment=args.experiment,
        log_root=args.log_dir,
        show_progress=not args.quiet and show_progress(),  # a bar on a terminal only
        device=device,
        draw_cost=args.draw_cost,
    )
    print(f"preset     {preset.name} ({preset.source})")
    print(
        f"data       {result.model.data['source']}: {result.model.data['transitions']} transitions, "
        f"{result.model.data['train_stays']} training / {result.model.data['valid_stays']} validation stays"
    )
    print(f"logs       {result.log_dir}")
    print(f"model      {result.model_path}")
    scope = result.model.scope
    print(f"dosing     every {scope.interval_h:g} h ({scope.label}; {scope.interval_source})")
    print(format_metrics(result.model.training["final_metrics"]))
    head = result.model.training.get("draw_head")
    if head is not None:
        print(
            f"draw head  cost {head['cost']:.3f} log AUC per level ({head['cost_rule']}): on the "
            f"validation stays {head['valid_head_per_week']:.2f} levels/week, the logs "
            f"{head['valid_logged_per_week']:.2f}"
        )
    return 0
