"""`python -m streamvae`: bench (the embedded default, no downloads), decode (your own VAE and latent), run (a
workflow on a ComfyUI server, see client/) and farm (a workflow per line of a job file on Ray workers, see farm/)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional

import torch

from .client.run_command import add_run_command
from .farm.command import add_farm_command
from .encoding import CODECS, CONTAINERS, ENCODERS, PRESETS
from .errors import Cancelled, EncoderError, StreamVAEError
from .pipeline import Progress
from .precision import PRECISIONS


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


def _add_encoder_options(parser: argparse.ArgumentParser, crf: Optional[int]) -> None:
    parser.add_argument("--container", default="mp4", choices=sorted(CONTAINERS))
    parser.add_argument("--codec", default="h264", choices=sorted(CODECS))
    parser.add_argument("--crf", type=int, default=crf, help="quality: lower is better (codec default if unset)")
    parser.add_argument("--preset", default="medium", choices=PRESETS)


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
        stats = decode_to_video(vae, latent, args.output, fps=args.fps, container=args.container, codec=args.codec,
                                crf=args.crf, preset=args.preset, pix_fmt=args.pix_fmt, encoder=args.encoder,
                                mode=args.mode, precision=args.precision, progress=bar, price_per_gpu_hour=args.price_per_hour)
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
    bench.add_argument("--price-per-hour", type=float, default=3.36, help="$ per GPU-hour (g7e.2xlarge: 3.36)")
    bench.add_argument("--modes", default="exact", help="streaming modes to time: exact, fast or exact,fast")
    bench.add_argument("--suite", choices=("one", "full"), default="one",
                       help="full: every case (720p/480p Wan 2.1, Wan 2.2, 1001 frames) with diffusers and fastvae "
                            "decode-only competitors, suite.json and a chart (GPU only)")
    _add_encoder_options(bench, crf=23)
    bench.set_defaults(run=cmd_bench)

    decode = commands.add_parser("decode", help="decode a ComfyUI .latent file with a VAE file to a video")
    decode.add_argument("--vae", required=True, help="VAE weights, e.g. wan_2.1_vae.safetensors")
    decode.add_argument("--latent", required=True, help="a .latent file from ComfyUI's SaveLatent")
    decode.add_argument("-o", "--output", required=True)
    decode.add_argument("--fps", default="16", help="16, 24, 30000/1001 ...")
    decode.add_argument("--pix-fmt")
    decode.add_argument("--encoder", default="auto", choices=ENCODERS)
    decode.add_argument("--device")
    decode.add_argument("--comfyui", help="ComfyUI folder, to load VAEs as ComfyUI does (else $COMFYUI_PATH)")
    decode.add_argument("--price-per-hour", type=float, default=3.36)
    decode.add_argument("--mode", default="exact", choices=("exact", "fast"))
    decode.add_argument("--precision", default="auto", choices=tuple(PRECISIONS),
                        help="the dtype the decoder computes in (auto: the VAE's own)")
    _add_encoder_options(decode, crf=None)
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
