#!/usr/bin/env python3
"""bench/summary.py -- the summary of one or more bench/run runs.

    summary.py RUNDIR OUT.json

RUNDIR holds, per run i (1..N): run-i.jsonl (the rows the bench programs
appended, one JSON object per line), run-i.start (UTC time), run-i.loadavg
(/proc/loadavg at the start) and run-i.pressure (/proc/pressure/cpu at the
start, may be empty), and info.json (commit, machine, settings). Writes:

  OUT.json          the rows as one JSON array. One run: its rows as the bench
                    programs wrote them. N runs: one row per figure, with
                    crew / anchor_value / advantage the median over the runs
                    and "runs": {"n", "crew", "anchor_value", "advantage"},
                    each [min, median, max] over the runs' medians
  OUT.runs.json     info.json plus every run's start, load, pressure and rows
  OUT.md            a markdown table of the summary, ready for the README

A figure is identified across runs by group, name, mode, anchor and the
anchor's role: the best setting of an anchor may differ from run to run
("OpenMP for static [best: ...]"), so "best" rows are one figure whatever
setting won, and the settings that won are listed.
"""
import json
import os
import statistics
import sys


def read(path, default=""):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def load_rows(path):
    rows = []
    for line in read(path).splitlines():
        line = line.strip()
        if line:
            rows.append(json.loads(line))
    return rows


def base_anchor(row):
    a = row.get("anchor")
    if a and row.get("anchor_role") and " [" in a:
        return a.split(" [")[0]
    return a


def keys_of(row):
    """The figure keys a row counts for: a "default, best" row is both."""
    role = row.get("anchor_role")
    roles = [r.strip() for r in role.split(",")] if role else [None]
    return [(row.get("group"), row.get("name"), row.get("mode"), base_anchor(row), r)
            for r in roles]


def spread(vals):
    vals = [v for v in vals if isinstance(v, (int, float))]
    if not vals:
        return None
    return [min(vals), statistics.median(vals), max(vals)]


def summarize(runs):
    order, by_key = [], {}
    for i, rows in enumerate(runs):
        seen = {}
        for row in rows:
            for key in keys_of(row):
                n = seen.get(key, 0)
                seen[key] = n + 1
                k = key + (n,)  # a figure that appears twice in one run
                if k not in by_key:
                    by_key[k] = []
                    order.append(k)
                by_key[k].append((i, row))
    # A "best" figure whose best was the default in every run is the
    # default figure: one row, role "default, best".
    both = set()
    for k in order:
        if k[4] == "best" and all(r.get("anchor_role") == "default, best" for _, r in by_key[k]):
            both.add(k[:4] + ("default",) + k[5:])
    order = [k for k in order if k[:4] + ("default",) + k[5:] not in both or k[4] != "best"]
    out = []
    for k in order:
        hits = by_key[k]
        last = dict(hits[-1][1])
        role = "default, best" if k in both else k[4]
        if role:
            last["anchor_role"] = role
            settings = sorted({r.get("anchor_setting", "") for _, r in hits})
            last["anchor_settings_seen"] = settings
            last["anchor"] = f"{k[3]} [{role}: {' / '.join(settings)}]"
        if "missing" in last:
            out.append(last)
            continue
        for f in ("reps", "crew_min", "crew_max", "anchor_reps", "anchor_min", "anchor_max"):
            if len(runs) > 1:
                last.pop(f, None)  # one run's spread: in OUT.runs.json, per run
        s = {"n": len(hits)}
        for field in ("crew", "anchor_value", "advantage"):
            sp = spread([r.get(field) for _, r in hits])
            if sp:
                s[field] = sp
                last[field] = sp[1]
        last["runs"] = s
        out.append(last)
    return out


def fmt(v):
    if v is None:
        return ""
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.3g} M"
    if a >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3g}"


WITHIN = {"crew": ("crew_min", "crew_max"), "anchor_value": ("anchor_min", "anchor_max")}


def cell(row, field, unit=""):
    r = row.get("runs", {}).get(field)
    if row.get("runs", {}).get("n") == 1 and field in WITHIN:
        lo, hi = (row.get(k) for k in WITHIN[field])
        if lo is not None and hi is not None and r is not None:
            r = [lo, r[1], hi]  # one run: the spread of its repetitions
    if r is None:
        v = row.get(field)
        return f"{fmt(v)}{unit}" if v is not None else ""
    if r[0] == r[2]:
        return f"{fmt(r[1])}{unit}"
    return f"{fmt(r[1])}{unit} ({fmt(r[0])}–{fmt(r[2])})"


def markdown(info, metas, rows):
    n = len(metas)
    lines = [
        f"crew `bench/run`, commit `{info.get('commit', '?')}`, {n} run(s) on "
        f"{info.get('cpus', '?')} CPUs ({info.get('cpu_model', '?')}), kernel "
        f"{info.get('kernel', '?')}; CREW_BENCH_SCALE={info.get('scale', '1')}.",
        "",
        "Each run at its start: " + "; ".join(
            f"run {m['run']} {m['start']}: load {m['loadavg']}"
            + (f", cpu pressure {m['pressure_some']}" if m.get("pressure_some") else "")
            for m in metas) + ".",
        "",
        ("Values: the median of the runs' medians (min–max over the runs). "
         if n > 1 else "Values: medians of one run (min–max over its repetitions). ")
        + "Advantage > 1: crew better.",
        "",
        "| figure | mode | crew | anchor | anchor value | advantage | goal |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "missing" in r:
            lines.append(f"| {r['name']} | | | missing: {r['missing']} | | | |")
            continue
        unit = " " + r.get("unit", "") if r.get("unit") else ""
        lines.append("| {} | {} | {} | {} | {} | {} | {} |".format(
            r.get("name", "").strip(), r.get("mode") or "", cell(r, "crew", unit),
            r.get("anchor") or "—", cell(r, "anchor_value", unit) if r.get("anchor") else "",
            cell(r, "advantage", "x") if r.get("anchor") else "", r.get("goal") or ""))
    return "\n".join(lines) + "\n"


def pressure_some(text):
    for line in text.splitlines():
        if line.startswith("some "):
            return " ".join(p for p in line.split()[1:] if not p.startswith("total="))
    return ""


def main(argv):
    if len(argv) != 3:
        raise SystemExit(__doc__)
    rundir, out = argv[1], argv[2]
    info = json.loads(read(os.path.join(rundir, "info.json"), "{}"))
    metas, runs = [], []
    i = 1
    while os.path.exists(os.path.join(rundir, f"run-{i}.jsonl")):
        p = lambda ext: os.path.join(rundir, f"run-{i}.{ext}")
        rows = load_rows(p("jsonl"))
        press = read(p("pressure"))
        metas.append({"run": i, "start": read(p("start")), "loadavg": read(p("loadavg")),
                      "pressure_cpu": press, "pressure_some": pressure_some(press),
                      "rows": rows})
        runs.append(rows)
        i += 1
    if not runs:
        raise SystemExit(f"summary.py: no run-1.jsonl in {rundir}")
    rows = runs[0] if len(runs) == 1 else summarize(runs)
    base = out[:-5] if out.endswith(".json") else out
    with open(out, "w") as f:
        json.dump(rows, f, indent=1)
        f.write("\n")
    with open(base + ".runs.json", "w") as f:
        json.dump(dict(info, runs=metas), f, indent=1)
        f.write("\n")
    md = markdown(info, metas, summarize(runs))
    with open(base + ".md", "w") as f:
        f.write(md)
    print(md)
    print(f"figures written to {out}, {base}.runs.json and {base}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
