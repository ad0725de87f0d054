"""`python -m streamvae`: bench (the embedded default, no downloads), decode (your own VAE and latent) and run (a
workflow on a ComfyUI server, see client/)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional

import torch

from .client.run_command import add_run_command
from .convert import MODES
from .encoding import OPTION_CHOICES, OPTION_HELP, EncodeSettings, option_default
from .errors import Cancelled, EncoderError, StreamVAEError
from .pipeline import Progress
from .precision import PRECISIONS
from .stats import DEFAULT_PRICE_PER_GPU_HOUR


class ProgressBar:
    """A tqdm bar fed by the engine's progress callback."""

    def __init__(self, description: str):
        self.description = description
        self.bar = None

    def __call__(self, update: Progress) -> None:
        from tqdm import tqdm  # noqa: PLC0415

        if self.bar is None:
            self.bar = tqdm(total=update.frames_total, desc=self.description, unit="frame", leave=False)
        self.bar.update(update.frames_done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _device(name: Optional[str]) -> torch.device:
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def add_encoder_options(parser: argparse.ArgumentParser, names: tuple[str, ...], **defaults) -> None:
    """--NAME for each named EncodeSettings option, with its help, choices and default (`defaults` overrides)."""
    for name in names:
        default = defaults.get(name, option_default(name))
        help_text = OPTION_HELP[name] + (f" (default: {default})" if default is not None else "")
        parser.add_argument("--" + name.replace("_", "-"), dest=name, default=default,
                            type=int if name in ("crf", "threads", "parallel") else None,
                            choices=OPTION_CHOICES.get(name), help=help_text)


def encode_settings(args, names: tuple[str, ...]) -> EncodeSettings:
    return EncodeSettings.from_options(**{name: getattr(args, name) for name in names})


def add_price_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--price-per-hour", type=float, default=DEFAULT_PRICE_PER_GPU_HOUR,
                        help=f"$ per GPU-hour, for the cost per hour of video (default {DEFAULT_PRICE_PER_GPU_HOUR}: "
                             "g7e.2xlarge on demand)")


DECODE_ENCODER_OPTIONS = ("fps", "container", "codec", "crf", "preset", "pix_fmt", "encoder")


def cmd_bench(args) -> int:
    from .bench import BenchCase, default_case, run_bench  # noqa: PLC0415 - needs the bench extra

    device = _device(args.device)
    modes = tuple(args.modes.split(","))
    options = dict(crf=args.crf, preset=args.preset, price_per_gpu_hour=args.price_per_hour)
    if args.suite == "full":
        from .suite import run_suite  # noqa: PLC0415

        if device.type != "cuda":
            raise StreamVAEError("--suite full times GPU decoders: run it on a machine with a CUDA GPU")
        run_suite(Path(args.out), impl=args.impl, modes=modes, **options)
        return 0
    case = default_case(args.arch, device)
    case = BenchCase(case.arch, args.frames or case.frames, args.height or case.height, args.width or case.width,
                     case.fps, case.dtype, device, args.impl)
    bar = ProgressBar("streaming")
    try:
        run_bench(case, Path(args.out), modes=modes, progress=bar, **options)
    finally:
        bar.close()
    return 0


def cmd_decode(args) -> int:
    from .api import decode_to_video  # noqa: PLC0415
    from .files import load_latent_file, load_vae_file  # noqa: PLC0415

    vae = load_vae_file(args.vae, comfyui=args.comfyui, device=args.device)
    latent = load_latent_file(args.latent)
    bar = ProgressBar("decoding")
    try:
        stats = decode_to_video(vae, latent, args.output, encode_settings(args, DECODE_ENCODER_OPTIONS),
                                mode=args.mode, precision=args.precision, progress=bar,
                                price_per_gpu_hour=args.price_per_hour)
    finally:
        bar.close()
    print(f"wrote {stats.path}: {stats.frames} frames {stats.width}x{stats.height} in {stats.wall_seconds:.2f} s "
          f"(RTF {stats.realtime_factor:.2f}, {stats.frames_per_second:.1f} frames/s, decoder {stats.decoder}, "
          f"encoder {stats.encoder})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m streamvae", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    bench = commands.add_parser("bench", help="stock-like vs streaming decode on a random-weight Wan VAE")
    bench.add_argument("--arch", default="wan2.1", choices=("wan2.1", "wan2.2"))
    bench.add_argument("--frames", type=int, help="pixel frames, 4k+1 (default 161 on a GPU, small on a CPU)")
    bench.add_argument("--width", type=int)
    bench.add_argument("--height", type=int)
    bench.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    bench.add_argument("--impl", default="diffusers", choices=("diffusers", "comfyui"),
                       help="whose Wan VAE classes to run: diffusers' (no ComfyUI needed) or ComfyUI's own VAE "
                            "object, loaded and decoded by ComfyUI as in a graph ($COMFYUI_PATH)")
    bench.add_argument("--out", default="out/bench", help="folder for the video and bench.json")
    add_price_option(bench)
    bench.add_argument("--modes", default="exact", help="streaming modes to time: exact, fast or exact,fast")
    bench.add_argument("--suite", choices=("one", "full"), default="one",
                       help="full: every case (720p/480p Wan 2.1, Wan 2.2, 1001 frames) with diffusers and fastvae "
                            "decode-only competitors, suite.json and a chart (GPU only)")
    add_encoder_options(bench, ("crf", "preset"), crf=23)
    bench.set_defaults(run=cmd_bench)

    decode = commands.add_parser("decode", help="decode a ComfyUI .latent file with a VAE file to a video")
    decode.add_argument("--vae", required=True, help="VAE weights, e.g. wan_2.1_vae.safetensors")
    decode.add_argument("--latent", required=True, help="a .latent file from ComfyUI's SaveLatent")
    decode.add_argument("-o", "--output", required=True, help="the video file; its extension picks the container")
    decode.add_argument("--device")
    decode.add_argument("--comfyui", help="ComfyUI folder, to load VAEs as ComfyUI does (else $COMFYUI_PATH)")
    add_price_option(decode)
    decode.add_argument("--mode", default="exact", choices=MODES)
    decode.add_argument("--precision", default="auto", choices=tuple(PRECISIONS),
                        help="the dtype the decoder computes in (auto: the VAE's own)")
    add_encoder_options(decode, DECODE_ENCODER_OPTIONS)
    decode.set_defaults(run=cmd_decode)

    add_run_command(commands)
    return parser


def main(argv: Optional[list] = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (StreamVAEError, EncoderError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (Cancelled, KeyboardInterrupt):
        print("cancelled; no file was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
