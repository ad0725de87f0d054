"""`python -m benchmarks` (from the repository root): stock-like vs streaming decode of a random-weight Wan VAE,
no downloads. `--suite full` runs every case with the decode-only competitors (GPU only).

A GPU run appends its rows to benchmarks/results.jsonl (keyed by card, torch, host release and commit); a CPU run
only checks that both paths work here and says where the GPU numbers are (`--record` keeps it anyway).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional

import torch

from streamvae.cli import ProgressBar, add_encoder_options, add_price_option
from streamvae.errors import Cancelled, EncoderError, StreamVAEError
from streamvae.files import comfyui_release, find_comfyui

from . import results
from .bench import BenchCase, default_case, run_bench


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--arch", default="wan2.1", choices=("wan2.1", "wan2.2"))
    parser.add_argument("--frames", type=int, help="pixel frames, 4k+1 (default 161 on a GPU, small on a CPU)")
    parser.add_argument("--width", type=int)
    parser.add_argument("--height", type=int)
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--impl", default="diffusers", choices=("diffusers", "comfyui"),
                        help="whose Wan VAE classes to run: diffusers' (no ComfyUI needed) or ComfyUI's own VAE "
                             "object, loaded and decoded by ComfyUI as in a graph ($COMFYUI_PATH)")
    parser.add_argument("--out", default="out/bench", help="folder for the videos and bench.json")
    add_price_option(parser)
    parser.add_argument("--modes", default="exact", help="streaming modes to time: exact, fast or exact,fast")
    parser.add_argument("--suite", choices=("one", "full"), default="one",
                        help="full: every case (720p/480p Wan 2.1, Wan 2.2, 1001 frames) with diffusers and fastvae "
                             "decode-only competitors, suite.json and a chart (GPU only)")
    parser.add_argument("--run", default="", help="a label for this run's rows in the results file")
    parser.add_argument("--record", action=argparse.BooleanOptionalAction, default=None,
                        help="append the rows to the results file (default: on a GPU yes, on a CPU no)")
    parser.add_argument("--results", type=Path, default=results.RESULTS, help="the results file (JSON lines)")
    add_encoder_options(parser, ("crf", "preset"), crf=23)
    return parser


def host_release(impl: str) -> str:
    if impl != "comfyui":
        return results.NO_HOST
    root = find_comfyui()
    return f"ComfyUI {comfyui_release(root)}" if root else "ComfyUI (unknown)"


def run(args, command: str) -> int:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    modes = tuple(args.modes.split(","))
    options = dict(crf=args.crf, preset=args.preset, price_per_gpu_hour=args.price_per_hour)
    if args.suite == "full":
        from .suite import run_suite  # noqa: PLC0415 - the competitors and the chart need more packages

        if device.type != "cuda":
            raise StreamVAEError("--suite full times GPU decoders: run it on a machine with a CUDA GPU")
        suite = run_suite(Path(args.out), impl=args.impl, modes=modes, **options)
        reports = list(suite["cases"].items())
    else:
        case = default_case(args.arch, device)
        case = BenchCase(case.arch, args.frames or case.frames, args.height or case.height,
                         args.width or case.width, case.fps, case.dtype, device, args.impl)
        bar = ProgressBar("streaming")
        try:
            reports = [(None, run_bench(case, Path(args.out), modes=modes, progress=bar, **options))]
        finally:
            bar.close()
    if args.record if args.record is not None else device.type == "cuda":
        rows = [row for name, report in reports
                for row in results.rows_from_report(report, host=host_release(args.impl),
                                                    commit=results.current_commit(), command=command,
                                                    run=args.run, case_name=name)]
        results.append(rows, args.results)
        print(f"appended {len(rows)} rows to {args.results}")
    else:
        print(f"not recorded in {args.results} (a {device.type.upper()} run; --record keeps it)")
    return 0


def main(argv: Optional[list] = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        return run(args, " ".join(["python -m benchmarks", *argv]))
    except (StreamVAEError, EncoderError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (Cancelled, KeyboardInterrupt):
        print("cancelled", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
