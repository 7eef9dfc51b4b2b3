#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Readout studies on recorded MNIST runs: mead-readout run offline on each
recording (mead-readout -r), one process per core.

  compare     every feature layer x classifier: test accuracy mean and sd
              over the recordings, culture features and pixels
  efficiency  accuracy against the fraction of labelled trials the readouts
              learn from (--label-fraction F; the readout's own --fit-on,
              by default the best validation pass and the readout pass),
              culture features against pixels: a table, and a plot (SVG)
  plot        the plot again from an efficiency study's --json

The i-th recording is read with --seed i+1 (the layer's initial weights and
which trials keep their label).  Needs only Python 3; see docs/readout.md.
"""
import argparse
import concurrent.futures
import json
import math
import os
import statistics
import subprocess
import sys


def readout_bin():
    env = os.environ.get("MEAD_READOUT")
    if env:
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    for cand in (os.path.join(here, "..", "build", "readout", "mead-readout"), "mead-readout"):
        if os.path.sep not in cand or os.access(cand, os.X_OK):
            return cand
    return "mead-readout"


def run_one(binary, rec, seed, extra):
    cmd = [binary, "-r", rec, "-p", "none", "--json", "--seed", str(seed)] + extra
    p = subprocess.run(cmd, capture_output=True, text=True)
    lines = p.stdout.strip().splitlines()
    if p.returncode != 0 or not lines:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(cmd), p.returncode, p.stderr.strip()[-400:]))
    return json.loads(lines[-1])


def run_grid(args, configs):
    """configs: list of (key, extra args).  Returns {key: [result per recording]}."""
    binary = readout_bin()
    jobs = {}
    out = {k: [None] * len(args.recordings) for k, _ in configs}
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as ex:
        for k, extra in configs:
            for i, rec in enumerate(args.recordings):
                jobs[ex.submit(run_one, binary, rec, i + 1, extra + args.readout_arg)] = (k, i)
        done = 0
        for f in concurrent.futures.as_completed(jobs):
            k, i = jobs[f]
            out[k][i] = f.result()
            done += 1
            print("\r%d/%d runs" % (done, len(jobs)), end="", file=sys.stderr, flush=True)
    print("", file=sys.stderr)
    return out


def summary(vals):
    v = [x for x in vals if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not v:
        return None, None
    return statistics.fmean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)


def fmt(m, sd):
    return "-" if m is None else "%.4f (%.4f)" % (m, sd)


def compare(args):
    configs = [((l, c), ["--layer", l, "--classifier", c]) for l in args.layers for c in args.classifiers]
    res = run_grid(args, configs)
    rows = []
    print("| layer | classifier | culture readout mean (sd) | pixels mean (sd) |")
    print("|---|---|---|---|")
    for (l, c), rs in res.items():
        ro = summary([r["readout_accuracy"] for r in rs])
        px = summary([r["pixel_baseline"] for r in rs])
        rows.append({"layer": l, "classifier": c, "readout": [r["readout_accuracy"] for r in rs],
                     "pixels": [r["pixel_baseline"] for r in rs], "readout_mean": ro[0], "readout_sd": ro[1],
                     "pixels_mean": px[0], "pixels_sd": px[1]})
        print("| %s | %s | %s | %s |" % (l, c, fmt(*ro), fmt(*px)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"recordings": args.recordings, "rows": rows}, f, indent=1)


def svg_plot(path, fracs, series, title):
    """series: list of (name, colour, [(mean, sd) per fraction])."""
    w, h, l, r, t, b = 640, 420, 70, 170, 40, 60
    lo = min(m - s for _, _, pts in series for m, s in pts if m is not None)
    lo = max(0.0, math.floor(lo * 10) / 10)
    hi = 1.0
    xs = [math.log10(f) for f in fracs]
    x0, x1 = min(xs), max(xs)

    def px(f):
        return l + (math.log10(f) - x0) / (x1 - x0 or 1) * (w - l - r)

    def py(v):
        return t + (hi - v) / (hi - lo or 1) * (h - t - b)

    o = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" '
         'font-size="12">' % (w, h), '<rect width="100%" height="100%" fill="white"/>',
         '<text x="%d" y="22" font-size="14">%s</text>' % (l, title)]
    steps = int(round((hi - lo) / 0.05))
    for i in range(steps + 1):
        v = lo + i * 0.05
        o.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/>' % (l, w - r, py(v), py(v)))
        o.append('<text x="%d" y="%.1f" text-anchor="end">%.2f</text>' % (l - 6, py(v) + 4, v))
    for f in fracs:
        o.append('<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#ddd"/>' % (px(f), px(f), t, h - b))
        o.append('<text x="%.1f" y="%d" text-anchor="middle">%g%%</text>' % (px(f), h - b + 18, f * 100))
    o.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#333"/>' % (l, t, w - l - r, h - t - b))
    o.append('<text x="%d" y="%d" text-anchor="middle">labelled trials of the fit (log scale)</text>'
             % ((l + w - r) / 2, h - 18))
    o.append('<text transform="translate(18,%d) rotate(-90)" text-anchor="middle">test accuracy</text>'
             % ((t + h - b) / 2))
    for k, (name, col, pts) in enumerate(series):
        path_d = " ".join("%s%.1f,%.1f" % ("M" if i == 0 else "L", px(f), py(m))
                          for i, (f, (m, s)) in enumerate(zip(fracs, pts)) if m is not None)
        o.append('<path d="%s" fill="none" stroke="%s" stroke-width="2"/>' % (path_d, col))
        for f, (m, s) in zip(fracs, pts):
            if m is None:
                continue
            o.append('<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="%s"/>'
                     % (px(f), px(f), py(min(hi, m + s)), py(max(lo, m - s)), col))
            o.append('<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"/>' % (px(f), py(m), col))
        ly = t + 16 + 20 * k
        o.append('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s" stroke-width="2"/>'
                 % (w - r + 12, w - r + 36, ly, ly, col))
        o.append('<text x="%d" y="%d">%s</text>' % (w - r + 42, ly + 4, name))
    ny = t + 16 + 20 * len(series) + 10
    o.append('<text x="%d" y="%d" fill="#555" font-size="11">dots: mean over</text>' % (w - r + 12, ny))
    o.append('<text x="%d" y="%d" fill="#555" font-size="11">recordings; bars: sd</text>' % (w - r + 12, ny + 14))
    o.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")


def efficiency(args):
    fracs = sorted(args.fractions)
    configs = [(f, ["--label-fraction", repr(f)]) for f in fracs]
    res = run_grid(args, configs)
    ro = [summary([r["readout_accuracy"] for r in res[f]]) for f in fracs]
    px = [summary([r["pixel_baseline"] for r in res[f]]) for f in fracs]
    lab = [statistics.fmean(r["fit_labelled_trials"] for r in res[f]) for f in fracs]
    print("| labelled | mean labelled trials | culture readout mean (sd) | pixels mean (sd) |")
    print("|---|---|---|---|")
    for f, n, a, p in zip(fracs, lab, ro, px):
        print("| %g%% | %.1f | %s | %s |" % (f * 100, n, fmt(*a), fmt(*p)))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"recordings": args.recordings, "fractions": fracs, "labelled_trials": lab,
                       "readout": [[r["readout_accuracy"] for r in res[f]] for f in fracs],
                       "pixels": [[r["pixel_baseline"] for r in res[f]] for f in fracs]}, fh, indent=1)
    if args.svg:
        svg_plot(args.svg, fracs, [("culture", "#c0392b", ro), ("pixels", "#2c3e50", px)],
                 args.title or "readout accuracy against labelled trials (%d recordings)" % len(args.recordings))


def plot(args):
    with open(args.study) as f:
        e = json.load(f)
    fracs = e["fractions"]
    ro = [summary(v) for v in e["readout"]]
    px = [summary(v) for v in e["pixels"]]
    svg_plot(args.svg, fracs, [("culture", "#c0392b", ro), ("pixels", "#2c3e50", px)],
             args.title or "readout accuracy against labelled trials (%d recordings)" % len(e["recordings"]))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("compare", "efficiency"):
        s = sub.add_parser(name)
        s.add_argument("recordings", nargs="+")
        s.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1)
        s.add_argument("--json", help="write the figures per recording to this file")
        s.add_argument("--readout-arg", action="append", default=[],
                       help="one more mead-readout argument (e.g. --readout-arg=--classes=10)")
        if name == "compare":
            s.add_argument("--layers", type=lambda v: v.split(","), default=["hpca", "swta", "swta-softmax", "none"])
            s.add_argument("--classifiers", type=lambda v: v.split(","), default=["lms", "hebbian", "proto"])
        else:
            s.add_argument("--fractions", type=lambda v: [float(x) for x in v.split(",")],
                           default=[0.01, 0.02, 0.05, 0.1, 0.25, 1.0])
            s.add_argument("--svg", help="draw the plot into this SVG file")
            s.add_argument("--title")
    p = sub.add_parser("plot")
    p.add_argument("study", help="the --json file of an efficiency study")
    p.add_argument("--svg", required=True)
    p.add_argument("--title")
    args = ap.parse_args()
    if args.cmd == "plot":
        return plot(args)
    for rec in args.recordings:
        if not os.path.isfile(rec):
            ap.error("%s: no such recording" % rec)
    if args.cmd == "efficiency":
        bad = [f for f in args.fractions if not 0 < f <= 1]
        if bad:
            ap.error("--fractions: %s not in (0, 1]" % bad)
    try:
        (compare if args.cmd == "compare" else efficiency)(args)
    except RuntimeError as e:
        print("readout-study: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
