#!/usr/bin/env python3
"""Writes config/prometheus/slo.yml: recording rules and multi-window, multi-burn-rate
alerts for each service-level objective. Edit the SLOS table and run it again; the
promtool tests in config/prometheus/slo_test.yml check what it writes."""
import os

WINDOWS = ["5m", "30m", "1h", "2h", "6h", "1d", "3d"]
GUARD = ["1h", "6h", "1d", "3d"]
MIN_EVENTS = 20

SLOS = [
    dict(
        name="payment_create", alert="CtripPaymentCreateErrorBudgetBurn", budget="0.001",
        what="payment creation", objective="99.9 % availability",
        doc="availability: 99.9 % of POST /v1/payments answer without a 5xx (a client's 4xx is the client's)",
        bad='sum(rate(ctrip_http_requests_total{route="/v1/payments",method="POST",status=~"5.."}[W]))',
        total='sum(rate(ctrip_http_requests_total{route="/v1/payments",method="POST"}[W]))',
        count='sum(increase(ctrip_http_requests_total{route="/v1/payments",method="POST"}[W]))',
    ),
    dict(
        name="payment_create_latency", alert="CtripPaymentCreateLatencyBudgetBurn", budget="0.01",
        what="payment creation latency", objective="99 % within 250 ms",
        doc="latency: 99 % of POST /v1/payments answer within 250 ms",
        bad='(sum(rate(ctrip_http_request_duration_seconds_count{route="/v1/payments",method="POST"}[W])) - sum(rate(ctrip_http_request_duration_seconds_bucket{route="/v1/payments",method="POST",le="0.25"}[W])))',
        total='sum(rate(ctrip_http_request_duration_seconds_count{route="/v1/payments",method="POST"}[W]))',
        count='sum(increase(ctrip_http_request_duration_seconds_count{route="/v1/payments",method="POST"}[W]))',
    ),
    dict(
        name="payment_confirmation", alert="CtripConfirmationBudgetBurn", budget="0.01",
        what="confirmation on time", objective="99 % on time",
        doc="confirmation on time: 99 % of payments confirm within confirmations x block_time + 60 s of their first detection",
        bad='sum(rate(ctrip_payment_confirmations_total{on_time="false"}[W]))',
        total='sum(rate(ctrip_payment_confirmations_total[W]))',
        count='sum(increase(ctrip_payment_confirmations_total[W]))',
    ),
    dict(
        name="webhook_dispatch", alert="CtripWebhookDispatchBudgetBurn", budget="0.005",
        what="webhook dispatch", objective="99.5 % first attempted within 30 s",
        doc="webhook dispatch: 99.5 % of deliveries get their first attempt within 30 s of the event, and no attempt fails for a reason of the gateway's own (outcome=\"error\"); a receiver's 4xx/5xx, a timeout or a refused connection never counts against it",
        bad='(sum(rate(ctrip_webhook_dispatch_lag_seconds_count[W])) - sum(rate(ctrip_webhook_dispatch_lag_seconds_bucket{le="30"}[W])) + sum(rate(ctrip_webhook_deliveries_total{outcome="error"}[W])))',
        total='sum(rate(ctrip_webhook_dispatch_lag_seconds_count[W]))',
        count='sum(increase(ctrip_webhook_dispatch_lag_seconds_count[W]))',
    ),
]

out = []
w = out.append
w("# Service-level objectives as code, written by scripts/gen-slo.py (edit it, not this file).")
w("# Unit tests: promtool test rules config/prometheus/slo_test.yml")
w("#")
for s in SLOS:
    w(f"#   {s['doc']}.")
w("#")
w("# Alerts follow the multi-window, multi-burn-rate scheme: page when the error budget burns")
w("# at 14.4x over 1 h (and still over 5 min) or 6x over 6 h (and 30 min); open a ticket on")
w("# 3x over 1 d (and 2 h) or 1x over 3 d (and 6 h). A low-traffic guard keeps a handful of")
w(f"# failures from paging: the long window must hold at least {MIN_EVENTS} events.")
w("groups:")
for s in SLOS:
    n, B = s["name"], s["budget"]
    w(f"  - name: ctrip-slo-{n.replace('_', '-')}")
    w("    rules:")
    w(f"      # Error ratio of {s['what']}, per window.")
    for win in WINDOWS:
        bad = s["bad"].replace("[W]", f"[{win}]")
        tot = s["total"].replace("[W]", f"[{win}]")
        w(f"      - record: ctrip:{n}_errors:ratio_rate{win}")
        w(f"        expr: {bad} / {tot}")
    w("      # Events per window, for the low-traffic guard.")
    for win in GUARD:
        w(f"      - record: ctrip:{n}_events:increase{win}")
        w(f"        expr: {s['count'].replace('[W]', f'[{win}]')}")
    r = lambda win: f"ctrip:{n}_errors:ratio_rate{win}"
    g = lambda win: f"ctrip:{n}_events:increase{win}"
    a = s["alert"]
    w("")
    w(f"      - alert: {a}")
    w("        expr: |")
    w("          (")
    w(f"            {r('1h')} > (14.4 * {B})")
    w(f"            and {r('5m')} > (14.4 * {B})")
    w(f"            and {g('1h')} >= {MIN_EVENTS}")
    w("          )")
    w("          or")
    w("          (")
    w(f"            {r('6h')} > (6 * {B})")
    w(f"            and {r('30m')} > (6 * {B})")
    w(f"            and {g('6h')} >= {MIN_EVENTS}")
    w("          )")
    w("        for: 2m")
    w("        labels:")
    w("          severity: critical")
    w(f"          slo: {n.replace('_', '-')}")
    w("        annotations:")
    w(f"          summary: \"{s['what']} is burning its {s['objective']} budget fast\"")
    w(f"          runbook_url: \"docs/runbook.md#{a.lower()}\"")
    w("")
    w(f"      - alert: {a}Slow")
    w("        expr: |")
    w("          (")
    w(f"            {r('1d')} > (3 * {B})")
    w(f"            and {r('2h')} > (3 * {B})")
    w(f"            and {g('1d')} >= {MIN_EVENTS}")
    w("          )")
    w("          or")
    w("          (")
    w(f"            {r('3d')} > {B}")
    w(f"            and {r('6h')} > {B}")
    w(f"            and {g('3d')} >= {MIN_EVENTS}")
    w("          )")
    w("        for: 1h")
    w("        labels:")
    w("          severity: warning")
    w(f"          slo: {n.replace('_', '-')}")
    w("        annotations:")
    w(f"          summary: \"{s['what']} is slowly burning its {s['objective']} budget\"")
    w(f"          runbook_url: \"docs/runbook.md#{(a + 'Slow').lower()}\"")
    w("")

path = os.path.join(os.path.dirname(__file__), "..", "config", "prometheus", "slo.yml")
with open(path, "w") as f:
    f.write("\n".join(out).rstrip() + "\n")

# --- promtool tests -----------------------------------------------------------------
# Each objective gets the same four cases: healthy (silent), a fast burn (pages), a slow
# burn (a ticket, never a page) and low traffic (a few failures in hours: silent).
# A case is a list of segments (minutes, good events a minute, bad events a minute).

def series(segments, pick):
    """promtool's expanding notation for a counter growing by pick(good, bad) a minute."""
    parts, cur, first = [], 0.0, True
    for minutes, good, bad in segments:
        inc = pick(good, bad)
        start = cur if first else cur + inc
        n = minutes if first else minutes - 1
        parts.append(f"{fmt(start)}+{fmt(inc)}x{n}")
        cur = start + inc * n
        first = False
    return " ".join(parts)

def fmt(x):
    return str(int(x)) if float(x).is_integer() else f"{x:g}"

def inputs(name, segments):
    good = lambda g, b: g
    bad = lambda g, b: b
    both = lambda g, b: g + b
    zero = lambda g, b: 0
    if name == "payment_create":
        return [('ctrip_http_requests_total{route="/v1/payments",method="POST",status="201"}', good),
                ('ctrip_http_requests_total{route="/v1/payments",method="POST",status="500"}', bad)]
    if name == "payment_create_latency":
        return [('ctrip_http_request_duration_seconds_count{route="/v1/payments",method="POST"}', both),
                ('ctrip_http_request_duration_seconds_bucket{route="/v1/payments",method="POST",le="0.25"}', good)]
    if name == "payment_confirmation":
        return [('ctrip_payment_confirmations_total{chain="ethereum",on_time="true"}', good),
                ('ctrip_payment_confirmations_total{chain="ethereum",on_time="false"}', bad)]
    if name == "webhook_dispatch":
        return [('ctrip_webhook_dispatch_lag_seconds_count', both),
                ('ctrip_webhook_dispatch_lag_seconds_bucket{le="30"}', good),
                ('ctrip_webhook_deliveries_total{outcome="error"}', zero),
                # A receiver failing every attempt burns nothing of ours.
                ('ctrip_webhook_deliveries_total{outcome="http_5xx"}', both)]
    raise KeyError(name)

t = []
w = t.append
w("# promtool test rules config/prometheus/slo_test.yml (written by scripts/gen-slo.py)")
w("rule_files:")
w("  - slo.yml")
w("")
w("evaluation_interval: 1m")
w("")
w("tests:")

def case(title, s, segments, checks):
    w(f"  # {s['what']}: {title}")
    w("  - interval: 1m")
    w("    input_series:")
    for name, pick in inputs(s["name"], segments):
        w(f"      - series: '{name}'")
        w(f"        values: '{series(segments, pick)}'")
    w("    alert_rule_test:")
    for at, alert, fires, severity, summary in checks:
        w(f"      - eval_time: {at}")
        w(f"        alertname: {alert}")
        if not fires:
            w("        exp_alerts: []")
        else:
            w("        exp_alerts:")
            w("          - exp_labels:")
            w(f"              severity: {severity}")
            w(f"              slo: {s['name'].replace('_', '-')}")
            w("            exp_annotations:")
            w(f"              summary: \"{summary}\"")
            w(f"              runbook_url: \"docs/runbook.md#{alert.lower()}\"")
    w("")

for s in SLOS:
    a, B = s["alert"], float(s["budget"])
    fast = f"{s['what']} is burning its {s['objective']} budget fast"
    slow = f"{s['what']} is slowly burning its {s['objective']} budget"
    case("healthy, silent", s, [(400, 10, 0)],
         [("6h", a, False, "", ""), ("6h", a + "Slow", False, "", "")])
    case("everything fails for 20 minutes, it pages", s, [(60, 10, 0), (20, 0, 10)],
         [("50m", a, False, "", ""), ("75m", a, True, "critical", fast),
          ("75m", a + "Slow", False, "", "")])
    bad = 4.5 * B * 1000
    case("4.5x the budget for a day, a ticket and never a page", s, [(1500, 1000 - bad, bad)],
         [("20h", a, False, "", ""), ("24h", a, False, "", ""),
          ("24h", a + "Slow", True, "warning", slow)])
    case("low traffic, three failures in hours, silent", s,
         [(100, 0, 0), (3, 0, 1), (200, 0, 0)],
         [("110m", a, False, "", ""), ("4h", a + "Slow", False, "", "")])

path = os.path.join(os.path.dirname(__file__), "..", "config", "prometheus", "slo_test.yml")
with open(path, "w") as f:
    f.write("\n".join(t).rstrip() + "\n")
