"""Run the upstream simulator in the foreground: python -m imagegen_local.simulator --port 8790."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
import threading
from types import FrameType

from .config import SimulatorConfig, parse_faults, parse_latency
from .server import UpstreamSimulator


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(message)s")
    # Environment first, then command-line flags on top of it.
    config = SimulatorConfig.from_env(os.environ)
    overrides: dict[str, object] = {}
    if args.latency:
        overrides["latency"] = parse_latency(args.latency)
    if args.faults:
        overrides.update(parse_faults(args.faults))
    if args.api_key:
        overrides["api_key"] = args.api_key
    if args.seed is not None:
        overrides["seed"] = args.seed
    config = dataclasses.replace(config, **overrides)  # type: ignore[arg-type]

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    with UpstreamSimulator(config, host=args.host, port=args.port) as sim:
        print(sim.base_url, flush=True)  # scripts read the first line to find the server
        stop.wait()
    return 0


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m imagegen_local.simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8790, help="0 picks a free port")
    parser.add_argument("--latency", help="render time in seconds: 'min,max' or one number (default 3,10)")
    parser.add_argument("--faults", help="e.g. 'error_rate=0.1,timeout_rate=0.05' (as IMAGEGEN_SIM_FAULTS)")
    parser.add_argument("--api-key", help="require exactly this key (default: accept any non-empty key)")
    parser.add_argument("--seed", type=int, help="seed for reproducible faults and latencies")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
