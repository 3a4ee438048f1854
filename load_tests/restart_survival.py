"""What `vitrine serve` finds in its managed Redis after each kind of stop.

    python -m load_tests.restart_survival [--orders-lines 20000] [--stops sigint sigterm kill-api kill-redis] [--demo]

For each stop, in a fresh data dir: start `vitrine serve` (with a rules file holding one
experiment), run `vitrine import` with the demo catalogue and the first lines of its orders (it
joins serve's Redis), post impressions of the experiment, count what Redis holds, stop serve that
way, start `vitrine serve` again and count again. ``kill-redis`` waits 1.5 s after the last write
(the AOF is fsynced every second), kills redis-server with SIGKILL, then stops serve with SIGINT.
``--demo`` also runs `vitrine demo` on an empty data dir (the full first run), Ctrl-C, then
`vitrine serve`. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parents[1]
VITRINE = [sys.executable, "-m", "api.cli"]
RULES = ("experiments:\n  home-test:\n    placement: home\n    variants:\n"
         "      - {name: a, weight: 1}\n      - {name: b, weight: 1}\n")
FAMILIES = {"visitors": "v:*", "customers": "c:*", "dedup": "d:*", "exposure": "x:*"}
STARTED: list[subprocess.Popen[str]] = []  # stopped on the way out, whatever happens


def environment(data_dir: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VITRINE_") or k == "VITRINE_REDIS_SERVER"}
    env.update({"VITRINE_DATA_DIR": str(data_dir), "VITRINE_PORT": str(port),
                "VITRINE_RULES_FILE": str(data_dir / "rules.yaml")})
    return env


def free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(command: str, data_dir: Path) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    proc = subprocess.Popen([*VITRINE, command], env=environment(data_dir, port), cwd=ROOT, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    STARTED.append(proc)
    deadline = time.monotonic() + (3600 if command == "demo" else 300)
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"vitrine {command} exited with {proc.returncode}")
        time.sleep(0.3)
    raise RuntimeError(f"vitrine {command} did not answer within the deadline")


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGINT) -> None:
    proc.send_signal(sig)
    proc.wait(timeout=60)


def count(data_dir: Path) -> dict[str, float]:
    """What the data dir's running redis-server holds."""
    port = json.loads((data_dir / "redis" / "redis.json").read_text())["port"]
    with redis.Redis(host="127.0.0.1", port=port) as client:
        found: dict[str, float] = {"items": client.hlen("items")}
        for name, pattern in FAMILIES.items():
            found[name] = sum(1 for _ in client.scan_iter(match=pattern, count=1000))
        found["xp impressions"] = client.zscore("xp:home-test", "a:impressions") or 0
    return found


def seed(data_dir: Path, port: int, orders_lines: int) -> None:
    from models.datasets import write_online_retail  # noqa: PLC0415

    items, events = write_online_retail(data_dir / "csv")
    subset = data_dir / "csv" / "orders.csv"
    with events.open() as src, subset.open("w") as dst:
        for number, line in enumerate(src):
            if number > orders_lines:
                break
            dst.write(line)
    env = environment(data_dir, port)
    subprocess.run([*VITRINE, "import", "--items", str(items), "--events", str(subset)], env=env, cwd=ROOT,
                   check=True, capture_output=True, timeout=600)
    shown = [{"event_id": f"x-{n}", "type": "block_impression", "visitor_id": f"web-{n}",
              "properties": {"block_id": "reco:home", "recommendation_id": f"r{n}.home-test.a"}} for n in range(20)]
    httpx.post(f"http://127.0.0.1:{port}/v1/events", json={"events": shown}, timeout=30).raise_for_status()


def redis_pid(data_dir: Path) -> int:
    return int(json.loads((data_dir / "redis" / "redis.json").read_text())["pid"])


def survive(stop_kind: str, data_dir: Path, orders_lines: int) -> tuple[dict[str, float], dict[str, float]]:
    (data_dir / "rules.yaml").parent.mkdir(parents=True, exist_ok=True)
    (data_dir / "rules.yaml").write_text(RULES)
    proc, port = start("serve", data_dir)
    seed(data_dir, port, orders_lines)
    before = count(data_dir)
    if stop_kind == "kill-redis":
        time.sleep(1.5)
        os.kill(redis_pid(data_dir), signal.SIGKILL)
        time.sleep(0.5)
        stop(proc)
    else:
        stop(proc, {"sigint": signal.SIGINT, "sigterm": signal.SIGTERM, "kill-api": signal.SIGKILL}[stop_kind])
    proc, _ = start("serve", data_dir)
    after = count(data_dir)
    stop(proc)
    return before, after


def demo(data_dir: Path) -> tuple[dict[str, float], dict[str, float]]:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "rules.yaml").write_text(RULES)
    proc, _ = start("demo", data_dir)
    before = count(data_dir)
    stop(proc)
    proc, _ = start("serve", data_dir)
    after = count(data_dir)
    stop(proc)
    return before, after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders-lines", type=int, default=20000)
    parser.add_argument("--stops", nargs="+", default=["sigint", "sigterm", "kill-api", "kill-redis"])
    parser.add_argument("--demo", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="vitrine-survival-") as tmp:
        try:
            if args.demo:
                rows.append(("vitrine demo, SIGINT", *demo(Path(tmp) / "demo")))
            for kind in args.stops:
                rows.append((f"vitrine serve, {kind}", *survive(kind, Path(tmp) / kind, args.orders_lines)))
        finally:
            for proc in STARTED:
                if proc.poll() is None:
                    stop(proc)
    names = list(rows[0][1])
    print("| stop, then `vitrine serve` | " + " | ".join(f"{n} before -> after" for n in names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for label, before, after in rows:
        print(f"| {label} | " + " | ".join(f"{before[n]:g} -> {after[n]:g}" for n in names) + " |")


if __name__ == "__main__":
    main()
