"""Micro-benchmarks for the next fast-mode steps: conv variants at every causal-conv shape of a real decoder step,
upsample+conv vs sub-pixel conv, and peak memory untiled vs forced tiles."""
import json, os, sys, time
from collections import Counter
import torch
import torch.nn.functional as F
from streamvae.decoders import decoder_for
from streamvae.decoders.tiling import TileGrid
from streamvae.fast import fast_kernels
from streamvae.kernels import upsample_conv
from benchmarks.synthetic import random_latent, random_wan_vae

OUT = os.environ.get("OUT", "/tmp")
res = {}
CASES = {"wan2.1": (720, 1280), "wan2.2": (704, 1280)}


def bench(fn, reps=20):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    s = torch.cuda.Event(enable_timing=True); e = torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(reps):
        fn()
    e.record(); torch.cuda.synchronize()
    return s.elapsed_time(e) / reps


def capture(arch):
    vae = random_wan_vae(arch, device="cuda", dtype=torch.bfloat16)
    h, w = CASES[arch]
    latent = random_latent(vae, 5, h, w)
    dec = decoder_for(vae, latent)
    convs, ups = Counter(), Counter()
    hooks = []
    for m in dec.parts.decoder.modules():
        n = type(m).__name__
        if n in ("WanCausalConv3d",):
            def pre(mod, args, kwargs):
                x = args[0]
                step[0] and convs.update([(tuple(x.shape), tuple(mod.weight.shape))])
            hooks.append(m.register_forward_pre_hook(pre, with_kwargs=True))
        if n in ("WanResample",) and getattr(m, "mode", "").startswith("upsample"):
            conv = m.resample[1]
            def pre2(mod, args):
                step[0] and ups.update([(tuple(args[0].shape), tuple(mod.weight.shape))])
            hooks.append(conv.register_forward_pre_hook(pre2))
    step = [0]
    with torch.inference_mode():
        for i, _ in enumerate(dec.chunks(latent)):
            step[0] = 1  # count the second step only (steady state)
    for hk in hooks:
        hk.remove()
    del vae, dec
    torch.cuda.empty_cache()
    return convs, ups


def conv_variants(xshape, wshape):
    _, cin, t, h, w = xshape
    cout, _, kt, kh, kw = wshape
    out = {}
    wt = torch.randn(wshape, device="cuda", dtype=torch.bfloat16) * 0.02
    if kt == 3:
        buf = torch.randn(1, cin, t + 2, h, w, device="cuda", dtype=torch.bfloat16).contiguous(
            memory_format=torch.channels_last_3d)
        w3 = wt.contiguous(memory_format=torch.channels_last_3d)
        out["3d"] = bench(lambda: F.conv3d(buf, w3, None, 1, (0, kh // 2, kw // 2)))
        frames = buf[0].transpose(0, 1)

        def taps():
            o = F.conv2d(frames[0:t], wt[:, :, 0], None, 1, kh // 2)
            o.add_(F.conv2d(frames[1:t + 1], wt[:, :, 1], None, 1, kh // 2))
            o.add_(F.conv2d(frames[2:t + 2], wt[:, :, 2], None, 1, kh // 2))
            return o
        out["taps"] = bench(taps)
        stacked = torch.randn(t, 3 * cin, h, w, device="cuda", dtype=torch.bfloat16).contiguous(
            memory_format=torch.channels_last)
        ws = wt.permute(0, 2, 1, 3, 4).reshape(cout, 3 * cin, kh, kw).contiguous(memory_format=torch.channels_last)
        out["stacked2d"] = bench(lambda: F.conv2d(stacked, ws, None, 1, kh // 2))
        slots = stacked.permute(0, 2, 3, 1).view(t, h, w, 3, cin)

        def build():
            for k in range(3):
                slots[:, :, :, k].copy_(frames[k:k + t].permute(0, 2, 3, 1))
        out["stack_copy"] = bench(build)
        flops = 2 * t * h * w * cout * cin * 27
    else:
        x = torch.randn(1, cin, t, h, w, device="cuda", dtype=torch.bfloat16).contiguous(
            memory_format=torch.channels_last_3d)
        w3 = wt.contiguous(memory_format=torch.channels_last_3d)
        out["3d"] = bench(lambda: F.conv3d(x, w3))
        flops = 2 * t * h * w * cout * cin * kt * kh * kw
    out["tflops_3d"] = round(flops / out["3d"] / 1e9, 1)
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in out.items()}


def subpixel(x, w4, cout):
    """The sub-pixel conv as measured: one conv, then the four-copy interleave (no Triton pass yet)."""
    return upsample_conv._interleave_torch(F.conv2d(x, w4, None, 1, 1), cout, torch.channels_last)


def up_variants(xshape, wshape):
    n, cin, h, w = xshape
    cout = wshape[0]
    x = torch.randn(xshape, device="cuda", dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last)
    wt = (torch.randn(wshape, device="cuda") * 0.02)
    w2 = wt.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    w4 = upsample_conv.fold_weight(wt).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    ref = lambda: F.conv2d(F.interpolate(x, scale_factor=2.0, mode="nearest"), w2, None, 1, 1)
    r = {"upsample_conv": bench(ref), "subpixel": bench(lambda: subpixel(x, w4, cout)),
         "subpixel_conv_only": bench(lambda: F.conv2d(x, w4, None, 1, 1)),
         "upsample_only": bench(lambda: F.interpolate(x, scale_factor=2.0, mode="nearest"))}
    a = ref().float(); b = subpixel(x, w4, cout).float()
    r["rel_err"] = float((a - b).norm() / a.norm())
    return {k: round(v, 4) for k, v in r.items()}


def memory(arch):
    vae = random_wan_vae(arch, device="cuda", dtype=torch.bfloat16)
    h, w = CASES[arch]
    latent = random_latent(vae, 17, h, w)
    dec = decoder_for(vae, latent)
    rows = {}
    for mode in ("exact", "fast"):
        for grid in (TileGrid(), TileGrid(1, 2), TileGrid(2, 2), TileGrid(2, 4)):
            torch.cuda.empty_cache(); torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            with torch.inference_mode():
                ctx = fast_kernels(dec.parts.decoder, dec.device) if mode == "fast" else torch.no_grad()
                with ctx:
                    patched = torch.cuda.memory_allocated() - base
                    x = dec.parts.pre_conv(latent.cuda().bfloat16())
                    for frames, pixels in dec._steps(x, grid):
                        del pixels
                    del x
            torch.cuda.synchronize()
            rows[f"{mode} {grid}"] = {"peak_over_weights_gib": round((torch.cuda.max_memory_allocated() - base) / 2**30, 2),
                                      "patch_gib": round(patched / 2**30, 2)}
            print(arch, mode, grid, rows[f"{mode} {grid}"], flush=True)
    del vae, dec
    torch.cuda.empty_cache()
    return rows


def main():
    torch.backends.cudnn.benchmark = False
    for arch in CASES:
        convs, ups = capture(arch)
        r = {"convs": [], "ups": []}
        for (xs, ws), count in sorted(convs.items(), key=lambda kv: -kv[0][0][1] * kv[0][0][3] * kv[0][0][4]):
            v = conv_variants(xs, ws); v.update(x=xs, w=ws, calls=count)
            print(arch, v, flush=True); r["convs"].append(v)
        for (xs, ws), count in ups.items():
            v = up_variants(xs, ws); v.update(x=xs, w=ws, calls=count)
            print(arch, v, flush=True); r["ups"].append(v)
        r["memory"] = memory(arch)
        res[arch] = r
        json.dump(res, open(os.path.join(OUT, "micro.json"), "w"), indent=1)


main()
