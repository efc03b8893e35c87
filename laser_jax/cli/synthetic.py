"""``laser-jax synthetic``: the synthetic noisy in-context-recall experiment (:func:`synthetic.run.run_experiment`).

This is the experiment's only parser: ``python -m synthetic.run`` runs this command with the same options.
"""

from __future__ import annotations

from laser_jax.errors import ConfigError, DataError


def register(commands) -> None:
    synthetic = commands.add_parser("synthetic", help="run the synthetic LASER experiment (no downloads)",
                                    description="Train the paper's two-layer transformers on noisy in-context recall, several "
                                                "seeds at once, and measure what truncating each matrix does along training.")
    synthetic.add_argument("--preset", default="quick", metavar="NAME",
                           help="quick (CPU demo, default), paper (GPU-sized) or tiny (smoke test)")
    synthetic.add_argument("--out", metavar="DIR", help="write summary.json, metrics.json, plots and checkpoints here")
    synthetic.add_argument("--seeds", type=int, metavar="N", help="seeds trained together (default: the preset's)")
    synthetic.add_argument("--alpha", type=float, metavar="A", help="noise probability after a trigger")
    synthetic.add_argument("--stats", metavar="SOURCE",
                           help="shakespeare (default, the paper's, shipped), docstrings, dirichlet[:SEED], a .json of "
                                "counts or a text file")
    synthetic.add_argument("--steps", type=int, metavar="N", help="training steps (default: the preset's)")
    synthetic.add_argument("--log-every", type=int, metavar="N", help="steps between logged evaluations")
    synthetic.add_argument("--checkpoint-steps", type=int, nargs="*", metavar="STEP",
                           help="save the training state and each seed's model (a laser-jax checkpoint) at these steps")
    synthetic.add_argument("--resume-from", metavar="DIR", help="an Orbax checkpoint directory written by a run")
    synthetic.add_argument("--no-assoc", action="store_true", help="skip the associative-memory toy model")
    synthetic.add_argument("--no-plots", action="store_true", help="write no PNG plots")
    synthetic.set_defaults(func=cmd_synthetic)


def cmd_synthetic(args) -> int:
    """Delegate to ``synthetic.run.run_experiment``."""
    try:
        from synthetic import run
        from synthetic.presets import PRESETS
    except ModuleNotFoundError as error:
        if not (error.name or "").startswith("synthetic"):
            raise
        raise DataError("the synthetic experiment is not installed (no synthetic.run module)") from None
    if args.preset not in PRESETS:
        raise ConfigError(f"unknown synthetic preset {args.preset!r}; known: {', '.join(PRESETS)}")
    run.run_experiment(args.preset, args.out, seeds=args.seeds, alpha=args.alpha, stats=args.stats, steps=args.steps,
                       log_every=args.log_every, checkpoint_steps=args.checkpoint_steps, resume_from=args.resume_from,
                       assoc=not args.no_assoc, make_plots=not args.no_plots)
    return 0
