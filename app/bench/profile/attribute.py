#!/usr/bin/env python3
"""Reads `perf script` output on stdin and attributes each sample to the first
category (telemetry first) found anywhere in its stack; prints the shares.

A frame is matched by its function's path only, not by the generic arguments
in its name: a frame of the whole request's future (`observe`'s, whose state
type is `RouteMetrics`) is not a metrics frame. Frames that only wrap the
request's future (OpenTelemetry's `WithContext`, which makes the server
span's context current on each poll) are skipped: the attaching itself shows
in its own frames (`Context::attach`, `ContextGuard`)."""
import sys, collections


cats = [
 ("tracing-opentelemetry layer", ["tracing_opentelemetry"]),
 ("OTLP export (SDK, tonic, prost)", ["opentelemetry_otlp", "tonic", "prost", "span_processor", "BatchSpanProcessor", "opentelemetry_proto"]),
 ("OTel SDK (span build, sampler, ids)", ["opentelemetry_sdk", "opentelemetry::", "faultline_telemetry::http_spans", "faultline_telemetry::head"]),
 ("metrics", ["metrics_exporter_prometheus", "metrics_util", "metrics::", "faultline_telemetry::metrics"]),
 ("fmt/JSON log layer", ["tracing_subscriber::fmt", "faultline_telemetry::logs"]),
 ("tracing registry/filter", ["tracing_subscriber", "tracing_core", "tracing::span", "sharded_slab"]),
 ("sqlx", ["sqlx"]),
 ("HTTP client (reqwest)", ["reqwest", "hyper_util::client", "hyper::client", "faultline_shop::http::client"]),
 ("HTTP server (hyper/axum/tower)", ["hyper", "axum", "tower", "faultline_shop::http::server", "governor"]),
 ("tokio", ["tokio"]),
]
def function_path(frame):
    """`addr symbol+0xoff (dso)` -> the symbol's path, without generics."""
    parts = frame.split(None, 1)
    symbol = parts[1] if len(parts) > 1 else frame
    return symbol.split("+0x")[0].lstrip("<").split("<")[0]
counts = collections.Counter(); total = 0; kernel_leaf = 0
stack = []; header = None
def flush():
    global total, kernel_leaf
    if header is None: return
    total += 1
    if stack and ("[kernel.kallsyms]" in stack[0] or "kallsyms" in stack[0]): kernel_leaf += 1
    joined = "\n".join(
        path for path in map(function_path, stack) if not path.endswith("future_ext::WithContext")
    )
    for name, pats in cats:
        if any(p in joined for p in pats):
            counts[name] += 1; return
    counts["other (libc, kernel, allocator)"] += 1
for line in sys.stdin:
    if not line.strip():
        flush(); stack = []; header = None; continue
    if line.startswith((" ", "\t")):
        stack.append(line.strip())
    else:
        header = line
flush()
print(f"samples {total}, kernel at the leaf {100*kernel_leaf/max(total,1):.0f}%")
for name, _ in cats + [("other (libc, kernel, allocator)", None)]:
    print(f"{name}: {100*counts[name]/max(total,1):.1f}%")
