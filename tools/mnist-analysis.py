#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Offline analyses of MNIST runs, on `mead-export REC --to npy` directories.

  ceiling DIR...    a shrunk linear discriminant fitted on the run's second-to-last
                    test-phase block (the readout pass) and scored on the last (the
                    test): a ceiling for linear readouts of the same features;
                    --classifier nn: the nearest neighbour (Euclidean) instead, a
                    non-linear check of what the same features hold.
  selection DIR...  how a best-validation-pass choice does, from a run with a whole
                    validation pass after every training step of the plan (record it
                    with eval_screen=0, test_size=1 and a large validation_size): the
                    validation digits are cut in two halves, one to choose the pass,
                    the other to score it, for several cadences and screens.

  blocks DIR...     the culture rule's accuracy in every test-phase block of a 0/1 run
                    (validation passes, a readout pass, the test): the best and the
                    mean validation pass, and the last block (the test).

Needs numpy (Debian: python3-numpy); not part of the daemon or its tests.
"""
import argparse
import json
import sys

import numpy as np

EV_TRIAL_START, EV_TRIAL_END, EV_LABEL, EV_PHASE, EV_ITEM = 3, 4, 5, 6, 7


def load(d, bins=1, stim=False):
    """Per-trial counts (trials x electrodes*bins) and the trial table."""
    ev = np.load(d + "/events.npy")
    meta = json.load(open(d + "/recording.json"))
    n_el = meta["electrode_count"]
    trials, cur, block, phase = [], None, -1, None
    for s, t, v in zip(ev["sample"], ev["type"], ev["value"]):
        if t == EV_PHASE:
            block += 1
            phase = int(v)
        elif t == EV_TRIAL_START:
            cur = {"start": int(s), "block": block, "phase": phase, "label": -1, "item": -1}
        elif t == EV_LABEL and cur is not None:
            cur["label"] = int(v)
        elif t == EV_ITEM and cur is not None:
            cur["item"] = int(v)
        elif t == EV_TRIAL_END and cur is not None:
            cur["end"] = int(s)
            trials.append(cur)
            cur = None
    rec = np.load(d + ("/stim.npy" if stim else "/spikes.npy"))
    starts = np.array([t["start"] for t in trials])
    ends = np.array([t["end"] for t in trials])
    ti = np.searchsorted(starts, rec["sample"], side="right") - 1
    ok = ti >= 0
    ok[ok] &= rec["sample"][ok] < ends[ti[ok]]
    ti = ti[ok]
    el = rec["electrode"][ok].astype(np.int64)
    rel = (rec["sample"][ok] - starts[ti]).astype(np.int64)
    dur = (ends - starts)[ti]
    b = np.minimum(rel * bins // np.maximum(dur, 1), bins - 1)
    x = np.zeros((len(trials), n_el * bins), np.float64)
    np.add.at(x, (ti, el * bins + b), 1)
    col = lambda k: np.array([t[k] for t in trials])
    return meta, x, col("label"), col("block"), col("phase"), col("item")


def lda_fit(x, y, shrink):
    classes = np.unique(y)
    mu = np.array([x[y == c].mean(0) for c in classes])
    xc = np.concatenate([x[y == c] - mu[i] for i, c in enumerate(classes)])
    cov = np.cov(xc.T)
    cov = (1 - shrink) * cov + shrink * np.trace(cov) / cov.shape[0] * np.eye(cov.shape[0])
    w = mu @ np.linalg.pinv(cov)
    b = -0.5 * np.sum(w * mu, 1)
    return classes, w, b


def nearest(x, y, q, chunk=500):
    """Label of each query's nearest (Euclidean) fitted row."""
    out = np.empty(len(q), y.dtype)
    xx = np.sum(x * x, 1)
    for i in range(0, len(q), chunk):
        d = xx[None, :] - 2 * q[i:i + chunk] @ x.T
        out[i:i + chunk] = y[np.argmin(d, 1)]
    return out


def ceiling(args):
    accs = []
    for d in args.dirs:
        meta, x, lab, blk, _, _ = load(d, args.bins, args.stim)
        rows, cols = meta["header"]["layout"]["rows"], meta["header"]["layout"]["cols"]
        keep = np.arange(x.shape[1])
        if args.no_label_column:
            el = keep // args.bins
            keep = keep[(el % cols) != cols - 1] if rows * cols == meta["electrode_count"] else keep
        x = x[:, keep]
        if args.transform in ("sqrt", "sqrt-l2"):
            x = np.sqrt(x)
        if args.transform in ("l2", "sqrt-l2"):
            x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        blocks = sorted(set(blk))
        fit, test = blk == blocks[-2], blk == blocks[-1]
        if args.classifier == "nn":
            pred = nearest(x[fit], lab[fit], x[test])
        else:
            classes, w, b = lda_fit(x[fit], lab[fit], args.shrink)
            pred = classes[np.argmax(x[test] @ w.T + b, 1)]
        a = float((pred == lab[test]).mean())
        accs.append(a)
        print(f"{d}: fit {fit.sum()} test {test.sum()} accuracy {a:.4f}")
    print(f"mean {np.mean(accs):.4f} over {len(accs)}")


def culture_rule_correct(meta, x, lab):
    """Per trial: does the culture's own 0/1 rule (label-cell counts per neuron) get it right."""
    npe = np.array(meta["header"]["driver"]["neurons_per_electrode"], float)
    cols = meta["header"]["layout"]["cols"]
    c0 = [r * cols + cols - 1 for r in range(3)]
    c1 = [r * cols + cols - 1 for r in range(3, 6)]
    s0 = x[:, c0].sum(1) / max(npe[c0].sum(), 1)
    s1 = x[:, c1].sum(1) / max(npe[c1].sum(), 1)
    return (s1 > s0).astype(int) == lab


def blocks(args):
    for d in args.dirs:
        meta, x, lab, blk, ph, _ = load(d)
        correct = culture_rule_correct(meta, x, lab)
        scored = [b for b in sorted(set(blk)) if ph[blk == b][0] == 1]
        acc = [float(correct[blk == b].mean()) for b in scored]
        n = [int((blk == b).sum()) for b in scored]
        passes = slice(0, -2) if args.readout_pass else slice(0, -1)
        whole = max(n[passes])
        val = [a for a, k in zip(acc[passes], n[passes]) if k == whole]  # screened-out passes are shorter
        print(f"{d}: {len(val)} whole validation passes, best {max(val):.4f}, mean {np.mean(val):.4f}; "
              f"test {acc[-1]:.4f} ({n[-1]} trials)")


def selection(args):
    cases = [(c, n) for c in args.cadences for n in args.screens]
    res = {k: [] for k in cases}
    work = {k: [] for k in cases}
    for d in args.dirs:
        meta, x, lab, blk, ph, item = load(d)
        correct = culture_rule_correct(meta, x, lab)
        passes = [b for b in sorted(set(blk)) if ph[blk == b][0] == 1][:-1]  # last: the test
        items = item[blk == passes[0]]
        m = np.array([[correct[(blk == b) & (item == it)][0] for it in items] for b in passes])
        order = np.random.default_rng(0).permutation(len(items))
        choose, score = order[: len(items) // 2], order[len(items) // 2:]
        for cad, scr in cases:
            idx = [i for i in range(len(passes)) if (i + 1) % cad == 0 or i == len(passes) - 1]
            best, best_acc, cost = None, -1.0, 0
            for i in idx:
                if scr:
                    cost += scr
                    if m[i][choose[:scr]].mean() < best_acc:
                        continue
                    cost += len(choose) - scr
                else:
                    cost += len(choose)
                a = m[i][choose].mean()
                if a > best_acc:
                    best, best_acc = i, a
            res[(cad, scr)].append(m[best][score].mean())
            work[(cad, scr)].append(cost)
        print(f"{d}: {len(passes)} passes, accuracy {m.mean(1).min():.3f}..{m.mean(1).max():.3f}")
    print("every(passes) screen  scored_half  validation_trials  per-run")
    for k in cases:
        print(f"{k[0]:13d} {k[1]:6d}  {np.mean(res[k]):.4f}       {np.mean(work[k]):8.0f}         "
              + " ".join(f"{v:.3f}" for v in res[k]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("ceiling")
    c.add_argument("dirs", nargs="+")
    c.add_argument("--bins", type=int, default=1, help="time bins per trial (1)")
    c.add_argument("--transform", choices=["raw", "sqrt", "l2", "sqrt-l2"], default="sqrt")
    c.add_argument("--shrink", type=float, default=0.1, help="covariance shrinkage (0.1)")
    c.add_argument("--classifier", choices=["lda", "nn"], default="lda",
                   help="shrunk linear discriminant, or nearest neighbour (lda)")
    c.add_argument("--stim", action="store_true", help="count the stimulation pulses instead of spikes")
    c.add_argument("--no-label-column", action="store_true", help="leave the last layout column out")
    s = sub.add_parser("selection")
    s.add_argument("dirs", nargs="+")
    s.add_argument("--cadences", type=int, nargs="+", default=[1, 2, 5], help="passes between choices")
    s.add_argument("--screens", type=int, nargs="+", default=[0, 50, 100], help="screen sizes, 0: whole")
    b = sub.add_parser("blocks")
    b.add_argument("dirs", nargs="+")
    b.add_argument("--readout-pass", action="store_true", help="the run had a readout pass before the test")
    a = ap.parse_args()
    return {"ceiling": ceiling, "selection": selection, "blocks": blocks}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
