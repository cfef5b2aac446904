"""Redis work per publication, measured on a running local cluster.

    python3 -m broker cluster up --insecure
    python3 deploy/tools/redis_load.py --state-dir .chorus-cluster --publications 2000

Subscribes one raw WebSocket client per node to one channel, publishes N times through
node 1's API (sequentially), and reads the primary's INFO before and after: commands,
CPU and network bytes per publication. Used for the sizing section of deploy/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import redis


def snapshot(client: redis.Redis) -> dict[str, Any]:
    info: dict[str, Any] = client.info("all")
    calls = {k[len("cmdstat_"):]: v["calls"] for k, v in info.items()
             if k.startswith("cmdstat_")}
    return {"calls": calls, "cpu": info["used_cpu_sys"] + info["used_cpu_user"],
            "out": info["total_net_output_bytes"], "in": info["total_net_input_bytes"]}


async def measure(state: dict[str, Any], publications: int) -> dict[str, Any]:
    ports = state["ports"]
    primary = redis.Redis(port=ports["primary"])
    async with aiohttp.ClientSession() as session:
        sockets = []
        for port in ports["nodes"]:
            ws = await session.ws_connect(f"ws://127.0.0.1:{port}/connection/websocket")
            await ws.send_str('{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"load"}}')
            await ws.receive(timeout=5)
            sockets.append(ws)
        before, started = snapshot(primary), time.perf_counter()
        url = f"http://127.0.0.1:{ports['nodes'][0]}/api/publish"
        for i in range(publications):
            body = {"channel": "load", "data": {"i": i, "pad": "x" * 60}}
            async with session.post(url, json=body,
                                    headers={"X-API-Key": state["api_key"]}) as response:
                await response.read()
        elapsed = time.perf_counter() - started
        after = snapshot(primary)
    calls = {name: round((n - before["calls"].get(name, 0)) / publications, 2)
             for name, n in after["calls"].items() if n > before["calls"].get(name, 0)}
    return {
        "publications": publications, "seconds": round(elapsed, 2), "nodes": len(sockets),
        "commands_per_publication": {k: v for k, v in calls.items() if v >= 0.05},
        "redis_cpu_us_per_publication": round(
            (after["cpu"] - before["cpu"]) / publications * 1e6, 1),
        "bytes_out_per_publication": round((after["out"] - before["out"]) / publications),
        "bytes_in_per_publication": round((after["in"] - before["in"]) / publications),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state-dir", default=".chorus-cluster")
    parser.add_argument("--publications", type=int, default=2000)
    args = parser.parse_args()
    state = json.loads((Path(args.state_dir) / "state.json").read_text())
    print(json.dumps(asyncio.run(measure(state, args.publications)), indent=2))


if __name__ == "__main__":
    main()
