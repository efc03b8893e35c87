"""The ``laser-jax`` command line: argument parsing and orchestration only, one module per command group.

=============  =================================================================  ==========================
command        what it does                                                       module
=============  =================================================================  ==========================
``sweep``      every (layer, τ, ρ) variant of a model on a task, resumable        :mod:`laser_jax.cli.runs`
``table``      the paper's Table 1: the selection protocol on several tasks        :mod:`laser_jax.cli.table`
``compose``    greedy composition of LASER steps on a run's validation part        :mod:`laser_jax.cli.table`
``report``     heatmaps and base-vs-best tables of a run                          :mod:`laser_jax.cli.analyses`
``apply``      apply edits and save the reduced model                             :mod:`laser_jax.cli.models`
``rmt``        Marchenko–Pastur ranks and SNRs of the weight matrices             :mod:`laser_jax.cli.models`
``removed``    what a step removes: the removed part's predictions                :mod:`laser_jax.cli.analyses`
``screen``     the first-order screen of a grid (no variants run)                 :mod:`laser_jax.cli.analyses`
``dynamics``   LASER across training checkpoints                                  :mod:`laser_jax.cli.analyses`
``synthetic``  the synthetic noisy in-context-recall experiment (no download)     :mod:`laser_jax.cli.synthetic`
``lm-eval``    lm-evaluation-harness's command line with the laser-jax backend    :mod:`laser_jax.cli.harness`
=============  =================================================================  ==========================

Any :class:`~laser_jax.errors.LaserJaxError` ends the program with one line, ``laser-jax: error: <message>``, and
exit code 2 (argparse's own usage errors also exit 2). The library never imports this package.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from laser_jax.cli import analyses, harness, models, runs, synthetic, table
from laser_jax.cli.arguments import parse_edit, parse_layers, parse_rhos, parse_taus
from laser_jax.errors import LaserJaxError

PROG = "laser-jax"
EXIT_ERROR = 2
COMPILE_CACHE = Path.home() / ".cache" / "laser-jax" / "xla"  # JAX's persistent compilation cache, unless the user set one
COMMAND_MODULES = (runs, table, analyses, models, synthetic, harness)  # each has register(commands), adding its subcommands


class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors: ``laser-jax sweep: error: ... (see --help)``, exit 2."""

    def error(self, message):
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The whole ``laser-jax`` parser: every subcommand, each with a one-line summary in ``laser-jax --help``."""
    from laser_jax import __version__

    parser = Parser(prog=PROG, description="Layer-selective rank reduction (LASER) for Hugging Face language models, in JAX.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser,
                                     title="commands")
    for module in COMMAND_MODULES:
        module.register(commands)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``laser-jax`` console script; returns the exit code."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = [PROG, *argv]
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        # Compiling dominates short and resumed runs: a grid reuses a few programs, but each process compiled them
        # anew. JAX opens the cache at its first compile; an empty JAX_COMPILATION_CACHE_DIR turns it off.
        import jax

        jax.config.update("jax_compilation_cache_dir", str(COMPILE_CACHE))
    try:
        return args.func(args) or 0
    except LaserJaxError as error:
        message = " ".join(str(error).split("\n")[0].split()) or type(error).__name__
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


__all__ = ["build_parser", "main", "Parser", "PROG", "EXIT_ERROR", "parse_edit", "parse_layers", "parse_rhos",
           "parse_taus"]
