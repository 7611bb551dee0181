"""`logtail demo FILE`: append realistic, mixed-level log lines, so a first run shows life.

It also rotates the file now and then (rename to FILE.1, start a new one), so the viewer's
rotation notices can be seen without waiting for logrotate.
"""

from __future__ import annotations

import json
import os
import random
import time
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["demo_line", "run_demo"]

PATHS = ["/", "/api/orders", "/api/orders/{id}", "/api/users/{id}", "/login", "/static/app.js",
         "/healthz", "/api/search?q=boots", "/checkout", "/api/cart"]
MESSAGES = {
    "DEBUG": ["cache hit key=user:{id}", "query took {ms} ms: SELECT * FROM orders WHERE id={id}",
              "feature flag new-checkout=off for user {id}"],
    "INFO": ["{method} {path} -> 200 in {ms} ms", "user {id} logged in from 203.0.113.{n}",
             "order {id} paid: {amount} EUR", "worker {n} picked job {id}"],
    "WARN": ["slow query ({ms} ms) on orders_by_user", "retrying payment provider (attempt {n})",
             "disk usage at {pct}% on /var"],
    "ERROR": ["payment declined for order {id}: card expired",
              "upstream timeout after 5000 ms: GET http://inventory/items/{id}",
              "unhandled exception in worker {n}: KeyError: 'sku'"],
}
WEIGHTS = {"DEBUG": 20, "INFO": 60, "WARN": 12, "ERROR": 8}


def demo_line(rng: random.Random) -> str:
    level = rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
    fields = {"id": rng.randint(1000, 99999), "ms": rng.choice([3, 12, 48, 120, 870, 2300]),
              "n": rng.randint(1, 16), "amount": f"{rng.uniform(5, 500):.2f}",
              "pct": rng.randint(70, 97), "method": rng.choice(["GET", "GET", "POST"]),
              "path": rng.choice(PATHS).replace("{id}", str(rng.randint(1, 999)))}
    msg = rng.choice(MESSAGES[level]).format(**fields)
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if rng.random() < 0.1:
        return json.dumps({"ts": stamp, "level": level.lower(), "msg": msg,
                           "service": "api", "trace": f"{rng.getrandbits(64):016x}"})
    if level == "ERROR" and rng.random() < 0.3:
        return f"{stamp} \x1b[31m{level}\x1b[0m api: {msg}"
    return f"{stamp} {level:<5} api: {msg}"


def run_demo(path: Path, rate: float, rotate_every: int = 2000) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random()
    written = 0
    print(f"logtail demo: appending {rate:g} lines/s to {path} (Ctrl-C to stop)", flush=True)
    try:
        while True:
            with open(path, "a", encoding="utf-8") as f:
                f.write(demo_line(rng) + "\n")
            written += 1
            if rotate_every and written % rotate_every == 0:
                os.replace(path, path.with_name(path.name + ".1"))
            time.sleep(rng.expovariate(rate) if rate > 0 else 1)
    except KeyboardInterrupt:
        return 0
