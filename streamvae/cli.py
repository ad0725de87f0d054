"""`python -m streamvae`: decode (your own VAE and latent file to a video), run (a workflow on a ComfyUI server,
see client/) and farm (a workflow per line of a job file on Ray workers, see farm/). The benchmark is `python -m
benchmarks`, from a checkout of the repository."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional

from .client.run_command import add_run_command
from .convert import MODES
from .encoding import OPTION_CHOICES, OPTION_HELP, EncodeSettings, option_default
from .errors import Cancelled, EncoderError, StreamVAEError
from .farm.command import add_farm_command
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
    add_farm_command(commands)
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
