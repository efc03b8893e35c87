"""The ``lm-eval`` command: lm-evaluation-harness's own command line with the ``laser-jax`` backend registered.

Every argument after ``laser-jax lm-eval`` goes to lm-eval unchanged (``-h``
shows lm-eval's help); ``--model laser-jax`` is added when no ``--model`` is
given. For example::

    laser-jax lm-eval --model_args model=smollm2,edit=fc_up:28:0.2 --tasks TASK --include_path DIR

The backend and its ``model_args`` are :mod:`laser_jax.harness`'s. Needs the
``lm-eval`` extra.
"""

from __future__ import annotations

import sys


def register(commands) -> None:
    # prefix_chars "+": lm-eval's options (--tasks, -h, ...) are not ours, so they all reach lm-eval as they are
    harness = commands.add_parser("lm-eval", add_help=False, prefix_chars="+",
                                  help="run lm-evaluation-harness on a (reduced) model: lm-eval's arguments, backend laser-jax",
                                  description="lm-eval's command line with the laser-jax backend; every argument passes "
                                              "through (laser-jax lm-eval -h shows lm-eval's help).")
    harness.add_argument("lm_eval_args", nargs="*", metavar="LM_EVAL_ARGS")
    harness.set_defaults(func=cmd_lm_eval)


def lm_eval_argv(args: list[str]) -> list[str]:
    """lm-eval's argument list: ours, with ``--model laser-jax`` unless a ``--model`` is given."""
    if any(a == "--model" or a.startswith("--model=") for a in args):
        return list(args)
    return ["--model", "laser-jax", *args]


def cmd_lm_eval(args) -> int:
    import laser_jax.harness  # noqa: F401  (registers the backend with lm-eval)
    from lm_eval.__main__ import cli_evaluate

    saved = sys.argv
    sys.argv = ["lm-eval", *lm_eval_argv(args.lm_eval_args)]
    try:
        cli_evaluate()
    except SystemExit as done:  # lm-eval's argparse and its own exits
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    finally:
        sys.argv = saved
    return 0
