#!/usr/bin/env python3
"""Sums ncu's per-kernel DRAM metrics over a process, next to the model's bytes.

    ncu --csv --metrics dram__bytes_read.sum,dram__bytes_write.sum --clock-control none \\
        --log-file step.csv <command>
    python3 benches/ncu_sum.py step.csv [MODEL_BYTES]

Prints the kernels counted and each metric's total in bytes; with MODEL_BYTES, the ratio of
measured (read + write) to model bytes. ncu writes units per row ("byte", "Kbyte", "Mbyte",
"Gbyte", or their binary forms); they are converted here.
"""
import csv
import sys

UNITS = {
    "byte": 1.0,
    "Kbyte": 1e3,
    "Mbyte": 1e6,
    "Gbyte": 1e9,
    "KB": 1e3,
    "MB": 1e6,
    "GB": 1e9,
    "Kibyte": 1024.0,
    "Mibyte": 1024.0**2,
    "Gibyte": 1024.0**3,
}


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1], newline="") as f:
        # ncu may print lines before the CSV header; start at the header.
        lines = f.read().splitlines()
    start = next((i for i, l in enumerate(lines) if l.startswith('"ID"')), None)
    if start is None:
        print(f"{sys.argv[1]}: no ncu CSV header found", file=sys.stderr)
        return 1
    rows = list(csv.DictReader(lines[start:]))
    totals = {}
    kernels = set()
    for r in rows:
        name, unit, value = r["Metric Name"], r["Metric Unit"], r["Metric Value"]
        scale = UNITS.get(unit)
        if scale is None:
            print(f"unknown unit {unit!r} for {name}", file=sys.stderr)
            return 1
        totals[name] = totals.get(name, 0.0) + float(value.replace(",", "")) * scale
        kernels.add((r["ID"], r["Kernel Name"]))
    print(f"{len(kernels)} kernel launches")
    for name, total in sorted(totals.items()):
        print(f"{name}: {total:.6e} bytes")
    measured = sum(totals.values())
    print(f"read + write: {measured:.6e} bytes")
    if len(sys.argv) > 2:
        model = float(sys.argv[2])
        print(f"model: {model:.6e} bytes; measured / model = {measured / model:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
