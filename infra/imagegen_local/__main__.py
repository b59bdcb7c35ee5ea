"""`make local`: run the whole service on loopback in the foreground until SIGINT/SIGTERM.

Once ready it writes local-stack.json at the repository root (the CDK stack's output keys)
and prints the outputs; on a signal it shuts everything down and removes the file. When the
API port is taken (another `make local`), it says so in one line, exits with status 1 and
leaves the running stack's file alone.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from imagegen_local.stack import OUTPUTS_FILE, LocalStack, LocalStackConfig, PortInUse


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for chatty in ("botocore", "httpx", "werkzeug"):  # one line per AWS call drowns the handlers' logs
        logging.getLogger(chatty).setLevel(logging.WARNING)
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        print(f"\nimagegen local stack: {signal.Signals(signum).name} received, shutting down", flush=True)
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)

    # IMAGEGEN_LOCAL_OUTPUTS lets a second stack (the end-to-end tests) run beside `make local`.
    outputs_file = Path(os.environ.get("IMAGEGEN_LOCAL_OUTPUTS") or OUTPUTS_FILE)
    stack = LocalStack(LocalStackConfig.from_env())
    try:
        stack.reserve_port()
    except PortInUse as exc:  # the running stack's outputs file is its own: leave it alone
        print(f"imagegen local stack: {exc}", file=sys.stderr, flush=True)
        return 1
    outputs_file.unlink(missing_ok=True)  # never leave a stale file that looks ready
    try:
        outputs = stack.start()
        stack.write_outputs(outputs_file)
        upstream = (
            "simulator at " + stack.simulator.base_url if stack.simulator else stack.config.provider_base_url
        )
        print(f"imagegen local stack ready (provider {stack.config.provider}, upstream {upstream})")
        print(json.dumps(outputs, indent=2), flush=True)
        print(f"outputs written to {outputs_file}; Ctrl-C to stop", flush=True)
        stop.wait()
    finally:
        stack.stop()
        outputs_file.unlink(missing_ok=True)
    print("imagegen local stack stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
