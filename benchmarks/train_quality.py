"""Sample quality of trained models: 2-D toys by sliced Wasserstein distance, digits by a
scikit-learn classifier's confidence.

2-D toys: for each toy, `jaxdiff train --data TOY --steps N` (the CLI's defaults: MLP, EDM
loss, AdamW, EMA), then samples from three samplers (Heun 18 steps, DPM-Solver++(2M) 20 steps,
DPM-Solver++(2M) SDE 40 steps). Each sample set's sliced 2-Wasserstein distance to held-out
data (fresh draws of the toy, with keys the training set never used) is reported next to the
distance between two held-out sets of the same size (the floor a perfect model reaches).
Target (issue 4): ratio <= 2.

Digits: `jaxdiff train --data digits --conditional` (U-Net, label dropout 0.1), then samples
with DPM-Solver++(2M) at guidance 0 (unconditional), 1 (conditional) and a stronger scale. A
logistic-regression classifier trained on all 1797 real digits (pixels in [-1, 1]) labels
every sample; reported: the fraction labelled with confidence >= 0.9, the classes present,
and (conditional) the fraction labelled as the class asked for. For reference the same
numbers on real digits (5-fold out-of-fold probabilities). Target (issue 4): >= 80 % of
samples at confidence >= 0.9, every class present.

    python benchmarks/train_quality.py --out FILE.md                    # toys and digits
    python benchmarks/train_quality.py --toys moons --no-digits         # one toy
    python benchmarks/train_quality.py --no-toys --digits-steps 3000    # digits only
    python benchmarks/train_quality.py --objective flow --coupling exact  # flow matching

With `--objective flow` (issue 12) the models are flow-matching velocity networks
(`--coupling none | exact | sinkhorn`), sampled from pure noise on `jd.schedules.flow(n)`:
Euler at 4 and 10 steps (the flow models' own sampler) and DPM-Solver++(2M) at 10 and 20 steps
for the toys; DPM-Solver++(2M), 20 steps, for the digits. Target (issue 12): ratio <= 2 on the
toys at NFE 10.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from jaxdiff.train import TOYS

SAMPLERS = (("heun", 18), ("dpmpp_2m", 20), ("dpmpp_2m_sde", 40))
FLOW_SAMPLERS = (("euler", 4), ("euler", 10), ("dpmpp_2m", 10), ("dpmpp_2m", 20))


def _objective_args(objective, coupling):
    return [] if objective == "edm" else ["--objective", "flow", "--coupling", coupling]


def _grid(objective, n):
    import jaxdiff as jd

    return jd.schedules.flow(n) if objective == "flow" else jd.schedules.karras(n, 0.002, 80.0)


def _train(argv):
    from jaxdiff.cli import main

    start = time.perf_counter()
    status = main(["train", *argv, "--quiet"])
    if status:
        raise SystemExit(f"training failed: {argv}")
    return time.perf_counter() - start


def toy_rows(toy, steps, num, seed, workdir, objective="edm", coupling="none"):
    import jax

    import jaxdiff as jd
    from jaxdiff.train import build_network, draw_samples

    run = Path(workdir) / toy
    argv = ["--data", toy, "--steps", str(steps), "--out", str(run), "--seed", str(seed)]
    seconds = _train(argv + _objective_args(objective, coupling))
    network, config = jd.train.load_model(run, lambda c: build_network(c["network"]))
    held = np.asarray(jd.train.load_dataset(toy, key=jax.random.key(10_000 + seed), n=2 * num).x)
    held_a, held_b = held[:num], held[num:]
    sw_key = jax.random.key(1)
    floor = float(jd.metrics.sliced_wasserstein(held_b, held_a, key=sw_key))
    rows = []
    for name, n in FLOW_SAMPLERS if objective == "flow" else SAMPLERS:
        solver = jd.samplers.by_name(name)
        sigmas = _grid(objective, n)
        x = draw_samples(
            network, config, solver=solver, sigmas=sigmas, num=num, key=jax.random.key(seed + 1)
        )
        sw = float(jd.metrics.sliced_wasserstein(x, held_a, key=sw_key))
        nfe = jd.samplers.num_evaluations(solver, sigmas)
        rows.append((toy, steps, seconds, name, nfe, sw, floor, sw / floor))
    return rows


def _classifier():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    import jaxdiff as jd

    images, labels = jd.train.digits()
    x = np.asarray(images).reshape(len(images), -1)
    y = np.asarray(labels)
    clf = LogisticRegression(C=1.0, max_iter=5000)
    proba = cross_val_predict(clf, x, y, cv=5, method="predict_proba")
    clf.fit(x, y)
    return clf, proba, y


def _digit_stats(proba, asked=None):
    conf = proba.max(axis=1)
    pred = proba.argmax(axis=1)
    stats = {
        "confident": float(np.mean(conf >= 0.9)),
        "classes": len(np.unique(pred[conf >= 0.9])),
    }
    if asked is not None:
        stats["as_asked"] = float(np.mean(pred == asked))
    return stats


def digit_rows(
    steps, width, num, guidance, seed, workdir, out_png, objective="edm", coupling="none"
):
    import jax

    import jaxdiff as jd
    from jaxdiff.cli._sample import plot
    from jaxdiff.train import build_network, draw_samples

    run = Path(workdir) / "digits"
    seconds = _train(
        [
            "--data",
            "digits",
            "--conditional",
            "--steps",
            str(steps),
            "--width",
            str(width),
            "--out",
            str(run),
            "--seed",
            str(seed),
            *_objective_args(objective, coupling),
        ]
    )
    network, config = jd.train.load_model(run, lambda c: build_network(c["network"]))
    clf, real_proba, real_y = _classifier()
    rows = [("real digits (out-of-fold)", "-", _digit_stats(real_proba, real_y))]
    solver = jd.samplers.by_name("dpmpp_2m")
    sigmas = _grid(objective, 20)
    asked = np.arange(num, dtype=np.int32) % 10
    for scale in (0.0, 1.0, guidance):
        x = draw_samples(
            network,
            config,
            solver=solver,
            sigmas=sigmas,
            num=num,
            key=jax.random.key(seed + 2),
            labels=asked,
            guidance=scale,
        )
        proba = clf.predict_proba(np.clip(x, -1, 1).reshape(num, -1))
        rows.append(
            (
                f"samples, guidance {scale:g}",
                "dpmpp_2m 20 steps",
                _digit_stats(proba, None if scale == 0 else asked),
            )
        )
        if out_png is not None and scale == guidance:
            order = np.argsort(asked[:100], kind="stable")
            plot(
                out_png, x[:100][order], config, title=f"digits: {steps} steps, guidance {scale:g}"
            )
    return rows, seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--toys", nargs="*", default=list(TOYS), choices=TOYS)
    parser.add_argument("--no-toys", action="store_true")
    parser.add_argument("--toy-steps", type=int, default=2500)
    parser.add_argument("--num", type=int, default=4000, help="samples per 2-D sampler")
    parser.add_argument("--no-digits", action="store_true")
    parser.add_argument("--digits-steps", type=int, default=4000)
    parser.add_argument("--digits-width", type=int, default=32)
    parser.add_argument("--digits-num", type=int, default=1000)
    parser.add_argument("--guidance", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--objective", choices=("edm", "flow"), default="edm")
    parser.add_argument("--coupling", choices=("none", "exact", "sinkhorn"), default="none")
    parser.add_argument("--png", default=None, help="write a grid of digit samples here")
    parser.add_argument("--out", default=None, help="write the Markdown tables here")
    args = parser.parse_args(argv)

    import jax

    lines = [
        f"device: {jax.default_backend()} ({jax.devices()[0].device_kind}), "
        f"{platform.machine()}, jax {jax.__version__}, python {platform.python_version()}; "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        "",
        "command: `python benchmarks/train_quality.py " + " ".join(sys.argv[1:]) + "`",
        "",
    ]
    with tempfile.TemporaryDirectory(prefix="jaxdiff-quality-") as workdir:
        if not args.no_toys:
            lines += [
                "| toy | train steps | train s | sampler | NFE | SW to held-out | floor | ratio |",
                "|---|--:|--:|---|--:|--:|--:|--:|",
            ]
            for toy in args.toys:
                rows = toy_rows(
                    toy, args.toy_steps, args.num, args.seed, workdir, args.objective, args.coupling
                )
                for r in rows:
                    lines.append(
                        f"| {r[0]} | {r[1]} | {r[2]:.0f} | {r[3]} | {r[4]} | "
                        f"{r[5]:.4f} | {r[6]:.4f} | {r[7]:.2f} |"
                    )
                    print(lines[-1], flush=True)
            lines.append("")
        if not args.no_digits:
            rows, seconds = digit_rows(
                args.digits_steps,
                args.digits_width,
                args.digits_num,
                args.guidance,
                args.seed,
                workdir,
                args.png,
                args.objective,
                args.coupling,
            )
            lines += [
                f"digits ({args.objective}): U-Net width {args.digits_width}, "
                f"{args.digits_steps} steps "
                f"in {seconds:.0f} s; {args.digits_num} samples",
                "",
                "| set | sampler | confidence >= 0.9 | classes present (confident) "
                "| labelled as asked |",
                "|---|---|--:|--:|--:|",
            ]
            for name, sampler, s in rows:
                asked = f"{s['as_asked']:.3f}" if "as_asked" in s else "-"
                lines.append(
                    f"| {name} | {sampler} | {s['confident']:.3f} | {s['classes']} | {asked} |"
                )
                print(lines[-1], flush=True)
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
