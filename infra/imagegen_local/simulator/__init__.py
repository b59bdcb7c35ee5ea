"""A local stand-in for the image-generation providers we call upstream.

One loopback HTTP server speaks three protocols and renders real images with Pillow:

- apiframe v2 (``POST /v2/images/generate``, ``GET /v2/jobs/{id}``; ``X-API-Key``; webhooks)
- apiin.one (``POST /api/v1/images/generations``, ``GET /api/v1/tasks/{id}``; Bearer)
- OpenAI Images (``POST /v1/images/generations`` and ``/v1/images/edits``; Bearer, synchronous)

Rendered files are served at ``{base_url}/files/{name}.{ext}``. Latency and faults (5xx, 429
with Retry-After, hangs, malformed answers, failed or never-finishing tasks, downloads that
break off midway) come from ``SimulatorConfig``, probabilistically for chaos runs, or scripted
call by call for one job only (a marker in its prompt, or its Idempotency-Key)::

    with UpstreamSimulator(SimulatorConfig(latency=(0.01, 0.05))) as sim:
        script = sim.script("#job-7", create_failures=[503, 429], download_failures=[BREAK])
        ...  # point a client at sim.base_url; a job whose prompt has "#job-7" gets those faults
        assert script.create_failures == []  # every scripted fault was used, by that job

What it created, and when each task finished, is in ``sim.task_records()`` and, over HTTP for
other processes, at ``GET {base_url}/_simulator/tasks``.
"""

from .config import BREAK, CUT_BODY, HANG, HTML_PAGE, MALFORMED, WRONG_SHAPE, FaultScript, SimulatorConfig
from .server import RECORDS_PATH, UpstreamSimulator
from .tasks import TaskRecord
from .webhooks import signature

__all__ = [
    "BREAK",
    "CUT_BODY",
    "HANG",
    "HTML_PAGE",
    "MALFORMED",
    "RECORDS_PATH",
    "WRONG_SHAPE",
    "FaultScript",
    "SimulatorConfig",
    "TaskRecord",
    "UpstreamSimulator",
    "signature",
]
