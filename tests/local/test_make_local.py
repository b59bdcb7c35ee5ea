"""`make local` (python -m imagegen_local) when its port is taken (#9.10): one clear line, exit
status 1, and the running stack's local-stack.json left as it was."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from tests.support import REPO


def test_a_second_stack_on_a_busy_port_says_so_in_one_line_and_leaves_the_running_ones_file(tmp_path):
    outputs_file = tmp_path / "local-stack.json"
    running = '{"ApiUrl": "http://127.0.0.1:8787"}\n'  # what the running stack wrote
    outputs_file.write_text(running)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_", "IMAGEGEN_"))}
    env["PYTHONPATH"] = os.pathsep.join(str(REPO / part) for part in ("functions", "infra"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env.update({"IMAGEGEN_LOCAL_PORT": str(port), "IMAGEGEN_LOCAL_OUTPUTS": str(outputs_file)})
        done = subprocess.run(
            [sys.executable, "-m", "imagegen_local"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr + done.stdout
    [line] = done.stderr.strip().splitlines()
    assert f"port {port} is already in use" in line and "IMAGEGEN_LOCAL_PORT" in line
    assert outputs_file.read_text() == running
