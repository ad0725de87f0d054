"""Fast-mode measurements on one GPU (docs/benchmarks.md "Fast decode kernels"): chunk-loop ablations for both Wan VAEs,
cold vs warm, PSNR vs exact, a torch-profiler summary. Run: `python -m benchmarks.fast_kernels_gpu` on a CUDA
machine with diffusers installed; writes $OUT/fast_gpu.json (default /tmp). The micro-benchmarks quoted in the doc
came from the earlier versions of micro() (run 1: norm; run 2: conv shapes); micro_old() is the first of them."""
import json
import math
import os
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from streamvae.decoders import decoder_for
from streamvae.fast import fast_kernels
from streamvae.kernels import HAVE_TRITON, rms_norm_silu, rms_norm_silu_reference
from benchmarks.synthetic import random_latent, random_wan_vae

OUT = os.environ.get("OUT", "/tmp")
RESULTS = {"env": {}, "micro": {}, "decode": {}}
ARCHES = sys.argv[1].split(",") if len(sys.argv) > 1 else ["wan2.1", "wan2.2"]
BASE = {"layout", "conv", "norm", "upsample"}
VARIANTS = {
    "all": BASE | {"resample", "taps"},
    "eager": None,
    "layout": {"layout"},
    "base": BASE,
    "base+resample": BASE | {"resample"},
    "base+taps": BASE | {"taps"},
}


def save():
    with open(os.path.join(OUT, "fast_gpu.json"), "w") as f:
        json.dump(RESULTS, f, indent=1)


def log(*a):
    print(*a, flush=True)


def env():
    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.sm,power.draw,temperature.gpu",
                          "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
    import triton
    RESULTS["env"] = {"smi": smi, "torch": torch.__version__, "triton": triton.__version__,
                      "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "have_triton": HAVE_TRITON,
                      "cudnn": torch.backends.cudnn.version()}
    log(RESULTS["env"])


def bench_ms(fn, reps=20):
    fn(); torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(reps):
        start.record(); fn(); end.record(); torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def micro_old():
    torch.manual_seed(0)
    for c, t, h, w in [(96, 4, 720, 1280), (192, 2, 360, 640), (384, 1, 180, 320), (256, 4, 352, 640),
                       (1024, 1, 44, 80)]:
        x = torch.randn(1, c, t, h, w, device="cuda", dtype=torch.bfloat16).contiguous(
            memory_format=torch.channels_last_3d)
        gamma = (1 + 0.1 * torch.randn(c, 1, 1, 1, device="cuda")).bfloat16()
        ref = rms_norm_silu_reference(x.double(), gamma.double(), None, c ** 0.5)
        got = rms_norm_silu(x, gamma, None, c ** 0.5)
        err = ((got.double() - ref).norm() / ref.norm()).item()
        eager = lambda: F.silu(F.normalize(x, dim=1) * c ** 0.5 * gamma + 0)  # noqa: E731 ComfyUI, bf16
        eager_cat = lambda: F.pad(torch.cat([x[:, :, :2], F.silu(F.normalize(x, dim=1) * c ** 0.5 * gamma + 0)], 2),  # noqa
                                  (1, 1, 1, 1, 0, 0))
        buf = torch.empty(1, c, t + 2, h, w, device="cuda", dtype=torch.bfloat16,
                          memory_format=torch.channels_last_3d)
        fused = lambda: rms_norm_silu(x, gamma, None, c ** 0.5, out=buf[:, :, 2:])  # noqa: E731
        te, tc, tf = bench_ms(eager), bench_ms(eager_cat), bench_ms(fused)
        gbytes = 2 * x.numel() * 2 / 1e9
        row = {"rel_err": err, "eager_norm_silu_ms": te, "eager_norm_silu_cat_pad_ms": tc, "fused_ms": tf,
               "fused_GBps": gbytes / tf * 1e3}
        # the conv itself: pre-padded input vs padding inside cuDNN
        if h * w * t <= 4 * 720 * 1280 and c <= 384:
            wgt = (torch.randn(c, c, 3, 3, 3, device="cuda") / math.sqrt(27 * c)).bfloat16().contiguous(
                memory_format=torch.channels_last_3d)
            padded = F.pad(buf, (1, 1, 1, 1, 0, 0))
            row["conv_prepadded_ms"] = bench_ms(lambda: F.conv3d(padded, wgt), 5)
            row["conv_padarg_ms"] = bench_ms(lambda: F.conv3d(buf, wgt, padding=(0, 1, 1)), 5)
            row["conv_tflops"] = 2 * 27 * c * c * t * h * w / row["conv_padarg_ms"] / 1e9
            diff = (F.conv3d(padded, wgt).float() - F.conv3d(buf, wgt, padding=(0, 1, 1)).float()).abs().max().item()
            row["conv_pad_maxdiff"] = diff
            del wgt, padded
        RESULTS["micro"][f"C{c} T{t} {h}x{w}"] = row
        log(f"micro C{c} T{t} {h}x{w}: {row}")
        del x, buf, ref, got
        torch.cuda.empty_cache()
    save()


def micro():
    torch.manual_seed(0)
    shapes = [(96, 96, 3, 4, 720, 1280), (96, 3, 3, 4, 720, 1280), (96, 16, 3, 4, 720, 1280),
              (256, 12, 3, 4, 352, 640), (256, 16, 3, 4, 352, 640), (192, 192, 3, 2, 360, 640)]
    for cin, cout, k, t, h, w in shapes:
        buf = torch.randn(1, cin, t + 2, h, w, device="cuda", dtype=torch.bfloat16).contiguous(
            memory_format=torch.channels_last_3d)
        wgt = (torch.randn(cout, cin, k, k, k, device="cuda") / math.sqrt(27 * cin)).bfloat16().contiguous(
            memory_format=torch.channels_last_3d)
        row = {}
        row["cl_ms"] = bench_ms(lambda: F.conv3d(buf, wgt, padding=(0, 1, 1)), 5)
        torch.backends.cudnn.benchmark = True
        row["cl_benchmark_ms"] = bench_ms(lambda: F.conv3d(buf, wgt, padding=(0, 1, 1)), 5)
        torch.backends.cudnn.benchmark = False
        bc, wc = buf.contiguous(), wgt.contiguous()
        row["ncdhw_ms"] = bench_ms(lambda: F.conv3d(bc, wc, padding=(0, 1, 1)), 5)
        if cout >= 16:
            # three temporal taps as 2-D convs over frames batched, summed
            w2 = [wgt[:, :, i].contiguous(memory_format=torch.channels_last) for i in range(3)]
            frames = buf[0].permute(1, 0, 2, 3)  # [T+2, C, H, W] channels-last 2-D view
            def taps():
                out = F.conv2d(frames[0:t], w2[0], padding=1)
                out += F.conv2d(frames[1:t + 1], w2[1], padding=1)
                out += F.conv2d(frames[2:t + 2], w2[2], padding=1)
                return out
            row["3x conv2d ms"] = bench_ms(taps, 5)
        row["tflops_cl"] = 2 * 27 * cin * cout * t * h * w / row["cl_ms"] / 1e9
        RESULTS["micro"][f"{cin}->{cout} T{t} {h}x{w}"] = row
        log(f"conv {cin}->{cout} T{t} {h}x{w}: " + ", ".join(f"{k}={v:.2f}" for k, v in row.items()))
        del buf, wgt, bc, wc
        torch.cuda.empty_cache()
    save()


def profile(decoder, latent, arch):
    from torch.profiler import ProfilerActivity, profile as prof
    with torch.inference_mode(), fast_kernels(decoder.parts.decoder, decoder.device, VARIANTS["all"]):
        chunks = decoder.chunks(latent[:, :, :6])
        next(chunks)
        torch.cuda.synchronize()
        with prof(activities=[ProfilerActivity.CUDA]) as p:
            for _ in chunks:
                pass
            torch.cuda.synchronize()
    table = p.key_averages().table(sort_by="cuda_time_total", row_limit=30, max_name_column_width=90)
    with open(os.path.join(OUT, f"profile_{arch}.txt"), "w") as f:
        f.write(table)
    for ev in sorted(p.key_averages(), key=lambda e: -e.device_time_total)[:8]:
        log(f"  {ev.device_time_total / 1e3:8.1f} ms  {ev.key[:100]}")


def run_chunks(decoder, latent, features):
    """Chunk loop, compute only; returns the seconds and the uint8 pixels if asked."""
    torch.cuda.synchronize()
    started = time.perf_counter()
    with torch.inference_mode():
        if features is None:
            for _ in decoder.chunks(latent):
                pass
        else:
            with fast_kernels(decoder.parts.decoder, decoder.device, features):
                for _ in decoder.chunks(latent):
                    pass
    torch.cuda.synchronize()
    return time.perf_counter() - started


def pixels(decoder, latent, features):
    with torch.inference_mode():
        if features is None:
            chunks = [((c.float().clamp(-1, 1) + 1) / 2 * 255).to(torch.uint8).cpu() for c in decoder.chunks(latent)]
        else:
            with fast_kernels(decoder.parts.decoder, decoder.device, features):
                chunks = [((c.float().clamp(-1, 1) + 1) / 2 * 255).to(torch.uint8).cpu()
                          for c in decoder.chunks(latent)]
    return torch.cat(chunks, 2).double()


def decode_case(arch):
    frames, height = (161, 720) if arch == "wan2.1" else (121, 704)
    t0 = time.perf_counter()
    vae = random_wan_vae(arch, device="cuda", dtype=torch.bfloat16)
    latent = random_latent(vae, frames, height, 1280)
    decoder = decoder_for(vae, latent)
    short = latent[:, :, :3]
    res = {"build_s": time.perf_counter() - t0}
    log(f"{arch}: built in {res['build_s']:.1f}s")
    torch.cuda.reset_peak_memory_stats()
    try:
        res["all cold full decode s"] = run_chunks(decoder, latent, VARIANTS["all"])  # fresh Triton cache, 1st use
        log(f"{arch} all, cold (Triton compile + first cuDNN use): {res['all cold full decode s']:.2f} s")
    except Exception as error:  # noqa: BLE001
        log(f"{arch} all cold FAILED: {error!r}")
    for name, feats in list(VARIANTS.items()):  # first use: Triton compile, cuDNN heuristics
        try:
            res[f"{name} first short decode s"] = run_chunks(decoder, short, feats)
        except Exception as error:  # noqa: BLE001
            log(f"{arch} {name} FAILED: {error!r}")
            res[f"{name} failed"] = repr(error)
    for name, feats in VARIANTS.items():
        if f"{name} failed" in res:
            continue
        torch.cuda.reset_peak_memory_stats()
        seconds = run_chunks(decoder, latent, feats)
        res[f"{name} s"] = seconds
        res[f"{name} peak GiB"] = torch.cuda.max_memory_allocated() / 2 ** 30
        log(f"{arch} {name}: {seconds:.2f} s, peak {res[f'{name} peak GiB']:.2f} GiB")
        RESULTS["decode"][arch] = res
        save()
    try:
        profile(decoder, latent, arch)
    except Exception as error:  # noqa: BLE001
        log("profile failed:", repr(error))
    for name in ("eager", "all", "base"):
        if f"{name} failed" in res:
            continue
        res[f"{name} s (2nd)"] = run_chunks(decoder, latent, VARIANTS[name])
        log(f"{arch} {name} again: {res[f'{name} s (2nd)']:.2f} s")
    exact = pixels(decoder, latent[:, :, :6], None)
    for name in ("layout", "base", "base+resample", "base+taps", "all"):
        if f"{name} failed" in res:
            continue
        fast = pixels(decoder, latent[:, :, :6], VARIANTS[name])
        mse = torch.mean((exact - fast) ** 2).item()
        res[f"{name} psnr dB"] = float("inf") if mse == 0 else 10 * math.log10(255 ** 2 / mse)
        log(f"{arch} {name} PSNR vs exact: {res[f'{name} psnr dB']:.2f} dB")
    RESULTS["decode"][arch] = res
    save()
    del vae, decoder, latent
    torch.cuda.empty_cache()


if __name__ == "__main__":
    import tempfile
    os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp()
    env()
    for arch in ARCHES:
        decode_case(arch)
    for arch, res in RESULTS["decode"].items():
        log(arch, {k: round(v, 2) for k, v in res.items()})
