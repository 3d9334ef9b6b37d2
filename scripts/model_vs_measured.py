#!/usr/bin/env python3
"""Puts measured beside predicted: the GPU check's calibration of the performance model.

    model_vs_measured.py PREDICTED_DIR MEASURED_OPS_CSV [NCU_CSV ...] > model_vs_measured.txt

PREDICTED_DIR is a committed report (benches/results/<date>-model-<card>/, its ops.csv and
launches.csv); MEASURED_OPS_CSV is `gpu_model --measure`'s measured_ops.csv; each NCU_CSV is
`ncu --csv --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum` over
`gpu_model --measure --tokens T` for one T. Ops are joined by (workload, T, pass, op); ncu's
kernels by order with the predicted launches of the same T (their entry names must agree, or
the join stops and says where). Writes a table of predicted and measured times and DRAM bytes
with their ratios, and a summary of the ratios (median and spread), to stdout.
"""
import csv
import statistics
import sys

UNITS = {"byte": 1.0, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9, "KB": 1e3, "MB": 1e6, "GB": 1e9,
         "Kibyte": 1024.0, "Mibyte": 1024.0 ** 2, "Gibyte": 1024.0 ** 3,
         "nsecond": 1e-9, "usecond": 1e-6, "msecond": 1e-3, "second": 1.0, "ns": 1e-9, "us": 1e-6,
         "ms": 1e-3}


def rows(path):
    with open(path, newline="") as f:
        lines = [l for l in f.read().splitlines() if not l.startswith("#")]
    return list(csv.DictReader(lines))


def ncu_kernels(path):
    """[(kernel name, seconds, dram bytes)] in launch order."""
    with open(path, newline="") as f:
        lines = f.read().splitlines()
    start = next((i for i, l in enumerate(lines) if l.startswith('"ID"')), None)
    if start is None:
        raise SystemExit(f"{path}: no ncu CSV header")
    kernels = {}
    for r in csv.DictReader(lines[start:]):
        k = kernels.setdefault(int(r["ID"]), {"name": r["Kernel Name"], "time": 0.0, "dram": 0.0})
        value = float(r["Metric Value"].replace(",", "")) * UNITS.get(r["Metric Unit"], float("nan"))
        if r["Metric Name"].startswith("gpu__time_duration"):
            k["time"] += value
        elif r["Metric Name"].startswith("dram__bytes"):
            k["dram"] += value
    return [(k["name"], k["time"], k["dram"]) for _, k in sorted(kernels.items())]


def summary(label, ratios):
    ratios = [r for r in ratios if r > 0]
    if not ratios:
        return f"{label}: no pairs"
    return (f"{label}: {len(ratios)} pairs, measured/predicted median {statistics.median(ratios):.2f}, "
            f"min {min(ratios):.2f}, max {max(ratios):.2f}")


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    predicted_dir, measured_ops = sys.argv[1], sys.argv[2]
    ops = {(r["family"], r["tokens"], r["pass"], r["op"]): r for r in rows(f"{predicted_dir}/ops.csv")}
    launches = rows(f"{predicted_dir}/launches.csv")
    print("MEASURED vs PREDICTED (the performance model's committed report)\n")
    print(f"{'workload':<28} {'T':>5} {'pass':<4} {'op':<28} {'predicted us':>12} {'measured us':>12} {'ratio':>6}")
    op_ratios = []
    for r in rows(measured_ops):
        key = (r["family"], r["tokens"], r["pass"], r["op"])
        p = ops.get(key)
        if p is None:
            print(f"{' '.join(key)}: not in the predicted report")
            continue
        pred, meas = float(p["predicted_us"]), float(r["measured_us"])
        op_ratios.append(meas / pred)
        print(f"{key[0]:<28} {key[1]:>5} {key[2]:<4} {key[3]:<28} {pred:>12.2f} {meas:>12.2f} {meas / pred:>6.2f}")
    print()
    print(summary("ops, wall time (host-synchronised, launch and read-back costs included)", op_ratios))
    time_ratios, dram_ratios = [], []
    for path in sys.argv[3:]:
        kernels = ncu_kernels(path)
        if not kernels:
            continue
        # The T of this ncu run: the predicted launches whose entries match in order.
        by_t = {}
        for l in launches:
            if l["kernel"] not in ("copy", "host"):
                by_t.setdefault(l["tokens"], []).append(l)
        match = None
        for t, ls in by_t.items():
            if len(ls) == len(kernels) and all(k[0].startswith(l["entry"]) for k, l in zip(kernels, ls)):
                match = (t, ls)
        if match is None:
            names = [k[0] for k in kernels[:5]]
            print(f"\n{path}: {len(kernels)} kernels ({names}...) match no T of the report; not joined")
            continue
        t, ls = match
        print(f"\n{path}: T = {t}, {len(kernels)} kernels\n")
        print(f"{'op':<30} {'entry':<34} {'pred us':>9} {'ncu us':>9} {'ratio':>6} {'pred MB':>9} {'ncu MB':>9} {'ratio':>6} limit")
        for (name, secs, dram), l in zip(kernels, ls):
            pred_us = float(l["predicted_us"])
            pred_mb = (float(l["dram_read_bytes"] or 0) + float(l["dram_write_bytes"] or 0)) / 1e6
            meas_us, meas_mb = secs * 1e6, dram / 1e6
            rt = meas_us / pred_us if pred_us else float("nan")
            rd = meas_mb / pred_mb if pred_mb else float("nan")
            time_ratios.append(rt)
            if pred_mb > 0.01:
                dram_ratios.append(rd)
            print(f"{l['family'][:12] + ':' + l['op']:<30.30} {l['entry']:<34} {pred_us:>9.2f} {meas_us:>9.2f} {rt:>6.2f} "
                  f"{pred_mb:>9.3f} {meas_mb:>9.3f} {rd:>6.2f} {l['limit']}")
    print()
    print(summary("kernels, ncu gpu__time_duration vs predicted (predictions include launch overhead)", time_ratios))
    print(summary("kernels, ncu DRAM bytes vs predicted", dram_ratios))
    return 0


if __name__ == "__main__":
    sys.exit(main())
