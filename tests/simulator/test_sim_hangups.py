"""A client that hangs up on the simulator (its read timed out, its job's deadline passed) is an
ordinary event in a chaos run: no traceback on stderr for it, which buried the run's output."""

from __future__ import annotations

import socket
import struct
import threading

import httpx

from imagegen_local.simulator import SimulatorConfig, UpstreamSimulator


def test_a_client_that_resets_its_connection_prints_no_traceback(capfd):
    with UpstreamSimulator(SimulatorConfig(latency=(0.0, 0.0))) as sim:
        host, port = sim.base_url.removeprefix("http://").split(":")
        for _ in range(5):
            sock = socket.create_connection((host, int(port)))
            threading.Event().wait(0.2)  # the handler is reading the request line by now
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # linger 0: a reset, not a clean close
        # The server still answers, after every reset was handled.
        assert httpx.get(sim.base_url + "/_simulator/tasks", timeout=30).status_code == 200

    assert "Traceback" not in capfd.readouterr().err
