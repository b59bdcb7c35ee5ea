"""A local stand-in for the image-generation providers we call upstream.

One loopback HTTP server speaks three protocols and renders real images with Pillow:

- apiframe v2 (``POST /v2/images/generate``, ``GET /v2/jobs/{id}``; ``X-API-Key``)
- apiin.one (``POST /api/v1/images/generations``, ``GET /api/v1/tasks/{id}``; Bearer)
- OpenAI Images (``POST /v1/images/generations`` and ``/v1/images/edits``; Bearer, synchronous)

Rendered files are served at ``{base_url}/files/{name}.{ext}``. Latency and faults
(errors, 429s, hangs, failed or never-finishing tasks) come from ``SimulatorConfig``,
either probabilistically or scripted call by call for deterministic tests::

    with UpstreamSimulator(SimulatorConfig(latency=(0.01, 0.05))) as sim:
        sim.config.create_failures = [503, 429]
        ...  # point a client at sim.base_url; inspect sim.created_tasks, sim.requests
"""

from .config import HANG, SimulatorConfig
from .server import UpstreamSimulator

__all__ = ["HANG", "SimulatorConfig", "UpstreamSimulator"]
