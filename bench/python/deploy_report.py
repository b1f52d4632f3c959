#!/usr/bin/env python3
"""Writes the report of bench/python/deploy.sh (a rolling restart under load).

    deploy_report.py --results DIR [--meta KEY=VALUE ...] --rep rep=N,env=F,openloop=F,raw=F,... ...
    deploy_report.py --rerender DIR/deploy-latest.json   # rewrite the .md files from saved figures

Each --rep names one repetition's files: env (KEY=VALUE: restart_start_ms, restart_end_ms,
restart_status, gunicorn_left), openloop (its JSON output), raw (its -raw records: scheduled
time in Unix ms, class, latency ms, error), before / after (GET /api/v1/pools/app before the
load and after the restart), restart_body, log (ballast's log). A request belongs to the deploy
window when it was scheduled between the start and the end of the restart call. Writes
DIR/deploy-latest.json (settings, machine, every figure), DIR/deploy-latest.md and
DIR/deploy-YYYY-MM-DD.md. Standard library only.
"""
import argparse
import json
import math
import os
import sys

CLASSES = ["get", "post"]
PARTS = [("window", "deploy window"), ("rest", "rest")]


def percentile(sorted_values, p):
    """Nearest rank, as openloop: the smallest value with at least p % at or below it."""
    if not sorted_values:
        return None
    rank = min(max(int(math.ceil(p / 100 * len(sorted_values))), 1), len(sorted_values))
    return sorted_values[rank - 1]


def stats(records):
    """count, errors by kind, p50 / p99 / max of the successful ones' latency."""
    ok = sorted(r["latency_ms"] for r in records if not r["error"])
    errors = {}
    for r in records:
        if r["error"]:
            errors[r["error"]] = errors.get(r["error"], 0) + 1
    return {
        "count": len(records),
        "ok": len(ok),
        "errors": errors,
        "p50_ms": percentile(ok, 50),
        "p99_ms": percentile(ok, 99),
        "max_ms": ok[-1] if ok else None,
    }


def read_raw(path):
    out = []
    with open(path) as f:
        head = f.readline().rstrip("\n").split("\t")
        for line in f:
            row = dict(zip(head, line.rstrip("\n").split("\t")))
            out.append({
                "sched_ms": float(row["sched_unix_ms"]),
                "class": row["class"],
                "latency_ms": float(row["latency_ms"]),
                "error": row.get("error", ""),
            })
    return out


def read_env(path):
    with open(path) as f:
        return dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def instances(pool):
    """pid and addr of each launched instance in a GET /api/v1/pools/app answer."""
    if not pool:
        return []
    return [{"pid": i.get("pid"), "addr": i.get("addr"), "state": i.get("state")}
            for i in (pool.get("launch") or {}).get("instances") or []]


def segment(records, start, end):
    """Stats per class (and all) of the requests scheduled in [start, end) and of the rest."""
    parts = {"window": [], "rest": []}
    for r in records:
        parts["window" if start <= r["sched_ms"] < end else "rest"].append(r)
    return {part: {cls: stats([r for r in recs if r["class"] == cls]) for cls in CLASSES}
            | {"all": stats(recs)} for part, recs in parts.items()}


def load_rep(spec):
    f = dict(kv.split("=", 1) for kv in spec.split(","))
    env = read_env(f["env"])
    result = read_json(f["openloop"]) or {}
    records = read_raw(f["raw"])
    start, end = int(env["restart_start_ms"]), int(env["restart_end_ms"])
    before, after = read_json(f.get("before", "")), read_json(f.get("after", ""))
    ib, ia = instances(before), instances(after)
    pids_before = {i["pid"] for i in ib}
    body = ""
    try:
        with open(f.get("restart_body", "")) as fh:
            body = fh.read().strip()
    except OSError:
        pass
    warn = err = 0
    try:
        with open(f.get("log", "")) as fh:
            for line in fh:
                warn += "level=WARN" in line
                err += "level=ERROR" in line
    except OSError:
        pass
    load_start = result.get("start_unix_ms") or (records[0]["sched_ms"] if records else start)
    load_end = load_start + 1000 * float(result.get("duration_s", 0))
    return {
        "rep": int(f["rep"]),
        "restart": {
            "status": env.get("restart_status", ""),
            "body": body,
            "start_unix_ms": start,
            "end_unix_ms": end,
            "duration_s": round((end - start) / 1000, 3),
            "start_s": round((start - load_start) / 1000, 3),
            "end_s": round((end - load_start) / 1000, 3),
            "ended_within_load": end <= load_end,
        },
        "instances_before": ib,
        "instances_after": ia,
        "replaced": sum(1 for i in ia if i["pid"] not in pids_before),
        "max_conns": ((after or before or {}).get("launch") or {}).get("max_conns"),
        "unexpected_exits": ((after or {}).get("launch") or {}).get("restarts"),
        "backends_up_after": sum(1 for b in (after or {}).get("backends") or [] if b.get("state") == "up"),
        "gunicorn_left": int(env.get("gunicorn_left", "-1")),
        "ballast_log": {"warn": warn, "error": err},
        "total": stats(records),
        "parts": segment(records, start, end),
        "openloop": {k: result.get(k) for k in ("scheduled", "ok", "errors", "errors_total",
                                                   "transport_samples", "send_lag_p99_ms",
                                                   "sent_rate", "ok_rate", "cpu_s", "start_unix_ms",
                                                   "duration_s", "rate", "seed")},
        "_records": records,
    }


def fmt_ms(v):
    if v is None:
        return "–"
    if v < 100:
        return "%.1f" % v
    return "{:,}".format(round(v)).replace(",", " ")


def fmt_errors(errors):
    total = sum(errors.values())
    if total == 0:
        return "0"

    def order(k):
        return (0, int(k)) if k.isdigit() else (1, k)

    return "%d (%s)" % (total, ", ".join("%s: %d" % (k, errors[k]) for k in sorted(errors, key=order)))


def render(doc):
    m = doc["meta"]
    reps = doc["reps"]
    out = []
    out.append("# Rolling restart under load: ballast `launch`, 3 gunicorn servers replaced one at a time")
    out.append("")
    out.append("- **date**: %s to %s (UTC)" % (m.get("started", "?"), m.get("finished", "?")))
    out.append("- **ballast commit**: %s" % m.get("commit", "?"))
    out.append("- **machine**: %s cores (`nproc`), %s, kernel %s; load average %s before, %s after"
               % (m.get("nproc", "?"), m.get("cpu", "?"), m.get("kernel", "?"),
                  m.get("loadavg_before", "?"), m.get("loadavg_after", "?")))
    out.append("- **versions**: gunicorn %s" % m.get("gunicorn", "?"))
    out.append("- **command**: `%s`" % m.get("command", "?"))
    out.append("- **setup**: ballast launches 3 × `gunicorn -w 2` (sync workers) of "
               "`examples/flask-gunicorn/app.py` on ports 18320–18339; pool `app`, `least_conn`, "
               "health check `/healthz` every 1 s, max_conns per instance from the command (%s), "
               "queue and retries at their defaults"
               % ", ".join(sorted({str(r.get("max_conns")) for r in reps})))
    out.append("- **load**: open loop, Poisson arrivals at %s req/s for %s s, no warm-up: 7 in 8 "
               "`GET /` (class get), 1 in 8 `POST /echo` with a 2 KiB body (class post; its answer "
               "must give the body's length); at %s s the script calls `POST "
               "/api/v1/pools/app/restart`, which answers when every instance is new; %s "
               "repetition(s), ballast and its gunicorns started afresh for each"
               % (m.get("rate", "?"), m.get("duration", "?"), m.get("restart_at", "?"), m.get("reps", "?")))
    out.append("")
    out.append("## Runs")
    out.append("")
    out.append("| rep | requests | errors | restart answer | restart took | restart from – to (s into the load) | instances replaced | backends up after | unexpected exits | gunicorn left after ballast stopped | ballast log warn / error |")
    out.append("| ---: | ---: | --- | --- | ---: | --- | --- | ---: | ---: | ---: | --- |")
    for r in reps:
        rs = r["restart"]
        out.append("| %d | %d | %s | %s | %.2f s | %.2f – %.2f%s | %d of %d (pids %s → %s) | %s | %s | %s | %d / %d |" % (
            r["rep"], r["total"]["count"], fmt_errors(r["total"]["errors"]), rs["status"] or "none",
            rs["duration_s"], rs["start_s"], rs["end_s"], "" if rs["ended_within_load"] else " (after the load ended)",
            r["replaced"], len(r["instances_before"]),
            " ".join(str(i["pid"]) for i in r["instances_before"]) or "?",
            " ".join(str(i["pid"]) for i in r["instances_after"]) or "?",
            r.get("backends_up_after", "?"), r.get("unexpected_exits", "?"), r["gunicorn_left"],
            r["ballast_log"]["warn"], r["ballast_log"]["error"]))
    out.append("")
    out.append("## Latency: the deploy window against the rest")
    out.append("")
    out.append("Latency in ms from the scheduled send time to the end of the response, successful "
               "(2xx, and for post the right length echoed) requests only. **deploy window**: the "
               "requests scheduled while the restart call was running; **rest**: before and after it.")
    out.append("")
    out.append("| rep | part | class | requests | errors | p50 | p99 | max |")
    out.append("| ---: | --- | --- | ---: | --- | ---: | ---: | ---: |")
    rows = [(str(r["rep"]), r["parts"]) for r in reps]
    if len(reps) > 1 and doc.get("pooled"):
        rows.append(("all", doc["pooled"]))
    for label, parts in rows:
        for part, title in PARTS:
            for cls in CLASSES:
                s = parts[part][cls]
                out.append("| %s | %s | %s | %d | %s | %s | %s | %s |" % (
                    label, title, cls, s["count"], fmt_errors(s["errors"]),
                    fmt_ms(s["p50_ms"]), fmt_ms(s["p99_ms"]), fmt_ms(s["max_ms"])))
    if len(reps) > 1:
        out.append("")
        out.append("Rows `all`: the requests of every repetition together.")
    out.append("")
    durations = sorted(r["restart"]["duration_s"] for r in reps)
    span = ("%.1f" % durations[0]) if durations[0] == durations[-1] else "%.1f–%.1f" % (durations[0], durations[-1])
    out.append("The deploy window lasts as long as the restart call (%s s here) and gets about %s "
               "requests a second, one in eight a post: its p99 is close to its max. Errors are any "
               "non-2xx answer, `transport` (refused, reset, 15 s client timeout), `bad_echo` (a 2xx "
               "answer to a POST without the body's length), `dropped` or `unfinished`."
               % (span, m.get("rate", "?")))
    lag = max((r["openloop"].get("send_lag_p99_ms") or 0 for r in reps), default=0)
    if lag > 5:
        out.append("")
        out.append("Note: the load generator started some requests late (send lag p99 up to %.1f ms); "
                   "the machine was busy." % lag)
    samples = sorted({s for r in reps for s in (r["openloop"].get("transport_samples") or [])})
    if samples:
        out.append("")
        out.append("Transport errors seen: " + "; ".join("`%s`" % s for s in samples[:5]) + ".")
    out.append("")
    return "\n".join(out)


def write(results, doc):
    os.makedirs(results, exist_ok=True)
    with open(os.path.join(results, "deploy-latest.json"), "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    md = render(doc)
    day = (doc["meta"].get("started") or "unknown")[:10]
    for name in ("deploy-latest.md", "deploy-%s.md" % day):
        with open(os.path.join(results, name), "w") as f:
            f.write(md)
    sys.stdout.write(md)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", default="bench/python/results")
    ap.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--rep", action="append", default=[])
    ap.add_argument("--rerender", metavar="DEPLOY_LATEST_JSON")
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
    reps = sorted((load_rep(s) for s in a.rep), key=lambda r: r["rep"])
    pooled = None
    if reps:
        allrec = {"window": [], "rest": []}
        for r in reps:
            s, e = r["restart"]["start_unix_ms"], r["restart"]["end_unix_ms"]
            for rec in r["_records"]:
                allrec["window" if s <= rec["sched_ms"] < e else "rest"].append(rec)
        pooled = {part: {cls: stats([x for x in recs if x["class"] == cls]) for cls in CLASSES}
                  | {"all": stats(recs)} for part, recs in allrec.items()}
    for r in reps:
        del r["_records"]
    write(a.results, {"meta": meta, "reps": reps, "pooled": pooled})


if __name__ == "__main__":
    main()
