"""Reproduces the libx265 small-frame failures without the pack (docs/reliability.md). Not a test: run it by hand,
    python repro_libx265_small_frames.py 48 yuv420p opts      (XP=x265-params to vary them)
It may abort the interpreter (heap corruption): that is the finding."""
import sys, numpy as np, av, os, tempfile
size, pix, opts = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "opts"
d = tempfile.mkdtemp(); fails = 0
for i in range(10):
    for frames in (1, 2, 3):
        try:
            c = av.open(os.path.join(d, "x.mp4"), "w")
            s = c.add_stream("libx265", rate=16); s.width = s.height = size; s.pix_fmt = pix
            if opts:
                s.codec_context.options = {"crf": "39", "preset": "ultrafast", "x265-params": os.environ.get("XP", "log-level=error")}
            for k, img in enumerate(np.random.default_rng(i).integers(0, 256, (frames, size, size, 3), dtype=np.uint8)):
                f = av.VideoFrame.from_ndarray(img, format="rgb24"); f.pts = k; c.mux(s.encode(f))
            c.mux(s.encode(None)); c.close()
        except Exception as e:
            fails += 1; last = str(e)[:80]
print(size, pix, opts, "fails", fails, "/30", flush=True)
