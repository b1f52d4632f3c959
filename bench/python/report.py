#!/usr/bin/env python3
"""Writes the report of bench/python/run.sh from openloop's JSON outputs.

    report.py --results DIR [--meta KEY=VALUE ...] RUN.json ...
    report.py --rerender DIR/latest.json        # rewrite the .md files from saved runs

Each RUN.json is one openloop output, named SHAPE-PROXY-REP.json. Writes DIR/latest.json
(settings, machine and every run's raw output), DIR/latest.md and DIR/YYYY-MM-DD.md.
Standard library only.
"""
import argparse
import json
import os
import statistics
import sys

PROXY_ORDER = ["ballast", "ballast-fifo", "haproxy", "haproxy-tuned", "nginx-lc", "nginx-mc"]
PROXY_NOTES = {
    "ballast": "least_conn, max_conns 2 per backend, queue 1000 / 10 s",
    "ballast-fifo": "the same with queue admission fifo (first come, first served)",
    "haproxy": "leastconn, maxconn 2 per server, timeout queue 10s",
    "haproxy-tuned": "the same backend; /api dequeued first (`set-priority-class int(-10)`), "
                     "/report through a backend whose only server, `maxconn 5`, is a second "
                     "listener of the same HAProxy forwarding to the shared backend: at most 5 "
                     "reports in service, the others queued",
    "nginx-lc": "least_conn, no max_conns",
    "nginx-mc": "least_conn, max_conns=2 (no queue)",
}
SHAPE_TITLES = {
    "a": "Shape a: slow requests on their own path (90 % GET /api 5 ms, 10 % GET /report 300 ms)",
    "b": "Shape b: one path for both (GET /work: 5 ms, or 300 ms one time in ten; X-Slow tells which)",
}


def load_runs(paths):
    runs = []
    for p in paths:
        name = os.path.basename(p)[: -len(".json")]
        shape, rest = name.split("-", 1)
        proxy, rep = rest.rsplit("-", 1)
        with open(p) as f:
            result = json.load(f)
        run = {"shape": shape, "proxy": proxy, "rep": int(rep), "result": result}
        cpu = load_cpu(p[: -len(".json")] + ".cpu", result)
        if cpu:
            run["cpu"] = cpu
        hastat = load_hastat(p[: -len(".json")] + ".hastat")
        if hastat:
            run["haproxy_stat"] = hastat
        runs.append(run)
    return runs


def load_hastat(path):
    """A few of HAProxy's counters from a `show stat` CSV saved at the end of a run (warm-up
    included): per proxy/server, the most sessions at once (smax), the most queued (qmax),
    the limit (slim) and the total (stot)."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    if not lines or not lines[0].startswith("# "):
        return None
    head = lines[0][2:].split(",")
    out = {}
    for line in lines[1:]:
        if not line:
            continue
        row = dict(zip(head, line.split(",")))
        key = "%s/%s" % (row.get("pxname"), row.get("svname"))
        out[key] = {k: int(row[k]) for k in ("qmax", "smax", "slim", "stot") if row.get(k, "").isdigit()}
    return out


def tuned_note(rows):
    """One line per haproxy-tuned run: how many reports were in service at once, at most."""
    parts = []
    for r in rows:
        st = r.get("haproxy_stat")
        if r["proxy"] != "haproxy-tuned" or not st:
            continue
        srv = st.get("reports/reports") or {}
        rq = st.get("reports/BACKEND") or {}
        app = st.get("app/BACKEND") or {}
        if srv.get("stot") == 0:
            parts.append("rep %d: no request took the reports path, at most %s requests waiting in "
                         "the shared queue" % (r["rep"], app.get("qmax", "?")))
            continue
        parts.append("rep %d: at most %s reports in service at once (the server's limit: %s; %s "
                     "reports in all), at most %s reports waiting for one of those slots, at most %s "
                     "requests waiting in the shared queue" % (
                         r["rep"], srv.get("smax", "?"), srv.get("slim", "?"), srv.get("stot", "?"),
                         rq.get("qmax", "?"), app.get("qmax", "?")))
    if not parts:
        return None
    return ("haproxy-tuned, from HAProxy's counters at the end of each run (warm-up included; "
            "`smax` and `slim` of the server `reports`, `qmax` of the backends `reports` and `app`): " + "; ".join(parts) + ".")


def load_cpu(path, result):
    """CPU use during a run from run.sh's KEY=VALUE file: seconds per process kind, and
    the share of the machine (all cores) that other processes used."""
    try:
        with open(path) as f:
            kv = dict(line.strip().split("=", 1) for line in f if "=" in line)
        wall, clk, nproc = float(kv["wall_s"]), float(kv["clk_tck"]), float(kv["nproc"])
        machine = float(kv["machine_ticks"]) / clk
        proxy = float(kv["proxy_ticks"]) / clk
        backends = float(kv["backend_ticks"]) / clk
    except (OSError, KeyError, ValueError):
        return None
    load = float(result.get("cpu_s", 0))
    other = max(0.0, machine - proxy - backends - load)
    return {
        "wall_s": wall,
        "machine_busy_s": round(machine, 2),
        "proxy_s": round(proxy, 2),
        "backends_s": round(backends, 2),
        "openloop_s": load,
        "other_pct": round(100 * other / (wall * nproc), 1) if wall > 0 and nproc > 0 else None,
    }


def fmt_ms(v):
    if v is None:
        return "–"
    if v < 100:
        return "%.1f" % v
    return "{:,}".format(round(v)).replace(",", " ")


def fmt_range(values, fmt):
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    if len(values) == 1:
        return fmt(values[0])
    return "%s (%s–%s)" % (fmt(statistics.median(values)), fmt(min(values)), fmt(max(values)))


def class_value(result, cls, key):
    c = result.get("classes", {}).get(cls) or {}
    if not c.get("count"):
        return None
    return c.get(key)


def long_share(result):
    """Per cent of the successful requests that were long (None without any)."""
    c = result.get("classes", {})
    short = (c.get("short") or {}).get("count", 0)
    long_ = (c.get("long") or {}).get("count", 0)
    if short + long_ == 0:
        return None
    return 100 * long_ / (short + long_)


def sum_errors(results):
    total, kinds = 0, {}
    for r in results:
        total += r.get("errors_total", 0)
        for k, v in (r.get("errors") or {}).items():
            kinds[k] = kinds.get(k, 0) + v
    return total, kinds


def fmt_errors(total, kinds):
    if total == 0:
        return "0"

    def order(k):
        return (0, int(k)) if k.isdigit() else (1, k)

    return "%d (%s)" % (total, ", ".join("%s: %d" % (k, kinds[k]) for k in sorted(kinds, key=order)))


def render(doc):
    m = doc["meta"]
    runs = doc["runs"]
    reps = max((r["rep"] for r in runs), default=1)
    out = []
    out.append("# Slow and fast requests behind one pool: ballast vs HAProxy vs nginx")
    out.append("")
    out.append("- **date**: %s to %s (UTC)" % (m.get("started", "?"), m.get("finished", "?")))
    out.append("- **ballast commit**: %s" % m.get("commit", "?"))
    out.append("- **machine**: %s cores (`nproc`), %s, kernel %s; load average %s before, %s after"
               % (m.get("nproc", "?"), m.get("cpu", "?"), m.get("kernel", "?"),
                  m.get("loadavg_before", "?"), m.get("loadavg_after", "?")))
    out.append("- **versions**: HAProxy %s, nginx %s, gunicorn %s"
               % (m.get("haproxy", "?"), m.get("nginx", "?"), m.get("gunicorn", "?")))
    out.append("- **command**: `%s`" % m.get("command", "?"))
    out.append("- **backends**: 3 × gunicorn, 2 sync workers each (6 requests at a time in all), "
               "`examples/flask-gunicorn/app.py`")
    try:
        rate = float(m["rate"])
        nominal = float(m["nominal_capacity"])
        measured = float(m["measured_capacity"])
        out.append("- **load**: open loop, Poisson arrivals at %g req/s for %s s after %s s of warm-up, "
                   "%s repetition(s); nominal capacity 6 / (0.9 × 5 ms + 0.1 × 300 ms) = %.0f req/s "
                   "(load %.0f %%); one request at a time the backends took %s ms (/api) and %s ms "
                   "(/report): capacity %.0f req/s (load %.0f %%)"
                   % (rate, m.get("duration"), m.get("warmup"), m.get("reps"), nominal,
                      100 * rate / nominal, m.get("api_ms"), m.get("report_ms"), measured,
                      100 * rate / measured))
    except (KeyError, ValueError, ZeroDivisionError):
        pass
    out.append("")
    out.append("Latency in ms from the scheduled send time to the end of the response, successful "
               "(2xx) requests only; errors are every non-2xx response or transport error "
               "(a 15 s client timeout included)%s."
               % ("; each cell is the median (min–max) of the %d repetitions, errors are summed" % reps
                  if reps > 1 else ""))
    for shape in ["a", "b"]:
        rows = [r for r in runs if r["shape"] == shape]
        if not rows:
            continue
        out.append("")
        out.append("## " + SHAPE_TITLES.get(shape, "Shape " + shape))
        out.append("")
        out.append("| proxy | short p50 | short p99 | long p50 | long p99 | long share | errors | 502 / 503 / 504 | achieved req/s | proxy CPU s | other CPU |")
        out.append("| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: |")
        proxies = [p for p in PROXY_ORDER if any(r["proxy"] == p for r in rows)]
        proxies += sorted({r["proxy"] for r in rows} - set(proxies))
        for p in proxies:
            mine = [r for r in sorted(rows, key=lambda r: r["rep"]) if r["proxy"] == p]
            res = [r["result"] for r in mine]
            cpus = [r.get("cpu") or {} for r in mine]
            total, kinds = sum_errors(res)
            gw = [sum((r.get("gateway_errors") or {}).get(c, 0) for r in res) for c in ("502", "503", "504")]
            out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                p,
                fmt_range([class_value(r, "short", "p50_ms") for r in res], fmt_ms),
                fmt_range([class_value(r, "short", "p99_ms") for r in res], fmt_ms),
                fmt_range([class_value(r, "long", "p50_ms") for r in res], fmt_ms),
                fmt_range([class_value(r, "long", "p99_ms") for r in res], fmt_ms),
                fmt_range([long_share(r) for r in res], lambda v: "%.1f %%" % v),
                fmt_errors(total, kinds),
                " / ".join(str(g) for g in gw),
                fmt_range([r.get("ok_rate") for r in res], lambda v: "%.1f" % v),
                fmt_range([c.get("proxy_s") for c in cpus], lambda v: "%.2f" % v),
                fmt_range([c.get("other_pct") for c in cpus], lambda v: "%.0f %%" % v),
            ))
        first = rows[0]["result"]
        counts = first.get("classes", {})
        out.append("")
        out.append("Successful requests in %s's first run: %d short, %d long, of %d scheduled. "
                   "Run order: %s.%s" % (
                       rows[0]["proxy"], (counts.get("short") or {}).get("count", 0),
                       (counts.get("long") or {}).get("count", 0), first.get("scheduled", 0),
                       " → ".join("%s" % r["proxy"] for r in rows),
                       " In this shape the load generator draws which requests are slow (from the seed: "
                       "every proxy meets the same sequence) and tells the app in a header no proxy reads." if shape == "b" else ""))
        note = tuned_note(rows)
        if note:
            out.append("")
            out.append(note)
    out.append("")
    out.append("Proxies: " + "; ".join("**%s** %s" % (p, PROXY_NOTES[p]) for p in PROXY_ORDER
                                        if any(r["proxy"] == p for r in runs)) + ".")
    out.append("")
    out.append("CPU: **proxy CPU s** is the user + system time of the proxy's processes during the "
               "run (warm-up included); **other CPU** is the share of the machine (all cores) used "
               "by processes other than the proxy, the gunicorns and the load generator during the "
               "run: near 0 on a quiet machine, and when it is high that run's latencies are not "
               "comparable with the others'.")
    lag = max((r["result"].get("send_lag_p99_ms", 0) for r in runs), default=0)
    if lag > 5:
        out.append("")
        out.append("Note: the load generator started some requests late (send lag p99 up to %.1f ms); "
                   "the machine was busy." % lag)
    out.append("")
    return "\n".join(out)


def write(results, doc):
    os.makedirs(results, exist_ok=True)
    with open(os.path.join(results, "latest.json"), "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    md = render(doc)
    day = (doc["meta"].get("started") or "unknown")[:10]
    for name in ("latest.md", day + ".md"):
        with open(os.path.join(results, name), "w") as f:
            f.write(md)
    sys.stdout.write(md)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", default="bench/python/results")
    ap.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--rerender", metavar="LATEST_JSON")
    ap.add_argument("runs", nargs="*")
    a = ap.parse_args()
    if a.rerender:
        with open(a.rerender) as f:
            doc = json.load(f)
        write(os.path.dirname(a.rerender) or ".", doc)
        return
    meta = {}
    for kv in a.meta:
        k, _, v = kv.partition("=")
        meta[k] = v
    doc = {"meta": meta, "runs": load_runs(a.runs)}
    write(a.results, doc)


if __name__ == "__main__":
    main()
