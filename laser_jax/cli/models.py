"""The commands on a model's weights: ``apply`` (edits, then an Orbax checkpoint, a Hugging Face directory and/or a
GGUF file: :mod:`laser_jax.laser`, :mod:`laser_jax.checkpoint`, :mod:`laser_jax.export`, :mod:`laser_jax.gguf`) and
``rmt`` (Marchenko–Pastur ranks and signal-to-noise ratios, :mod:`laser_jax.rmt`)."""

from __future__ import annotations

from pathlib import Path

from laser_jax.cli.arguments import (add_edit_arguments, add_grid_arguments, add_model_arguments, dtype, edits_of,
                                     parse_layers, parse_taus)
from laser_jax.errors import InterventionError, SourceError


def register(commands) -> None:
    apply = commands.add_parser("apply", help="apply rank reductions and save the reduced model",
                                description="Apply one or more LASER edits and save the reduced model with Orbax "
                                            "(load it back with laser_jax.load_model(DIR)), as a Hugging Face directory "
                                            "and/or as a GGUF file.")
    add_model_arguments(apply)
    add_edit_arguments(apply)
    apply.add_argument("--out", metavar="DIR", help="Orbax checkpoint directory")
    apply.add_argument("--factored", action="store_true", help="store truncated matrices as U_k, S_k, V_k only")
    apply.add_argument("--export-hf", metavar="DIR", help="also write a Hugging Face directory (config.json + model.safetensors)")
    apply.add_argument("--export-gguf", metavar="FILE", help="also write one GGUF file for llama.cpp (LLaMA/SmolLM2, Gemma 3); "
                                                             "the edits are recorded in its laser_jax.edits field")
    apply.add_argument("--gguf-type", choices=("f32", "f16", "q8_0"), default="f32",
                       help="tensor type of --export-gguf's matrices (norms stay f32; default f32)")
    apply.add_argument("--force", action="store_true", help="replace an existing --export-gguf FILE")
    apply.set_defaults(func=cmd_apply)

    rmt = commands.add_parser("rmt", help="Marchenko-Pastur ranks and signal-to-noise ratios of the weight matrices",
                              description="For every (layer, tau) matrix: the noise scale (Gavish-Donoho median estimator), "
                                          "the Marchenko-Pastur edge, the rank above it and the SNR; printed from the "
                                          "lowest SNR up (see laser_jax.rmt).")
    add_model_arguments(rmt)
    add_grid_arguments(rmt)
    rmt.add_argument("--out", metavar="FILE", help="also write the table as CSV")
    rmt.set_defaults(func=cmd_rmt)


def cmd_apply(args) -> int:
    steps = edits_of(args)
    if not steps:
        raise InterventionError("apply needs --edit TAU:LAYER:RHO (repeatable) or --edits FILE")
    if not args.out and not args.export_hf and not args.export_gguf:
        raise InterventionError("apply needs --out DIR (Orbax checkpoint), --export-hf DIR and/or --export-gguf FILE")
    if args.export_gguf and Path(args.export_gguf).expanduser().exists() and not args.force:
        raise SourceError(f"output {Path(args.export_gguf).expanduser().resolve()} exists; give --force to replace it")
    if args.factored and not args.out:
        raise InterventionError("--factored describes the Orbax checkpoint: give --out DIR")
    from laser_jax import checkpoint, laser
    from laser_jax.edits import resolve_edits
    from laser_jax.loading import load_model

    model = load_model(args.model, revision=args.revision, dtype=dtype(args.dtype))
    steps = resolve_edits(model, steps)
    if args.factored:  # the model is defined by its stored factors (== laser.apply up to float rounding)
        factors = checkpoint.edit_factors(model, steps)
        reduced = checkpoint.with_factors(laser.apply(model, steps), factors)
    else:
        factors, reduced = None, laser.apply(model, steps)
    if args.out:
        path = checkpoint.save(args.out, reduced, edits=steps, factors=factors)
        print(f"saved {'factored' if args.factored else 'dense'} checkpoint: {path}")
    if args.export_hf:
        from laser_jax.export import export_hf

        print(f"exported Hugging Face directory: {export_hf(reduced, args.export_hf)}")
    if args.export_gguf:
        from laser_jax.gguf import export_gguf

        path = export_gguf(reduced, args.export_gguf, args.gguf_type, edits=steps, force=args.force)
        print(f"exported GGUF file ({args.gguf_type}): {path}")
    return 0


def cmd_rmt(args) -> int:
    from laser_jax import rmt
    from laser_jax.ground import write_text_atomic
    from laser_jax.loading import load_model
    from laser_jax.results import to_csv

    layers, taus = parse_layers(args.layers), parse_taus(args.taus)
    model = load_model(args.model, revision=args.revision, dtype=dtype(args.dtype))
    rows = rmt.spectra(model, range(model.n_layers) if layers is None else layers, taus)
    rows.sort(key=lambda s: (s.snr, s.layer, s.tau))
    print(rmt.format_table(rows))
    if args.out:
        write_text_atomic(args.out, to_csv([s.row() for s in rows], rmt.CSV_COLUMNS))
        print(f"wrote {args.out}")
    return 0
