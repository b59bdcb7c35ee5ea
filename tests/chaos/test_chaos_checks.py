"""The chaos run's checks pass on a healthy run and fail on each defect they are there to catch
(a check that cannot fail would be a defect of its own). Fast: made-up runs, no stack."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from imagegen.models import GptImageParams, Job, JobStatus, UpstreamTask
from imagegen_local.chaos import Caller, ChaosOptions, Report, Submission, Target, Views, check
from imagegen_local.simulator import TaskRecord

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
OPTIONS = ChaosOptions(deadline=60, grace=10)
CALLERS = [Caller("igk_one", "owner-one"), Caller("igk_two", "owner-two")]


@dataclasses.dataclass
class Run:
    submissions: list[Submission]
    stored: dict[str, Job]
    views: Views
    records: list[TaskRecord]

    def report(self) -> Report:
        target = Target("http://api", CALLERS, simulator=None, jobs=None, provider="apiframe")  # type: ignore[arg-type]
        report = Report("test")
        check(report, target, OPTIONS, self.submissions, self.stored, self.views, self.records)
        return report

    def verdicts(self) -> dict[str, bool]:
        return {row.check: bool(row.ok) for row in self.report().rows if row.ok is not None}


def healthy_run() -> Run:
    """Two jobs from two keys: one COMPLETED, one FAILED and refunded."""
    run = Run([], {}, Views(), [])
    for n, status in enumerate((JobStatus.COMPLETED, JobStatus.FAILED)):
        job_id, prompt, params = f"job-{n}", f"chaos-x chaos {n} #m{n}", {"quality": "low"}
        task = f"task-{n}"
        run.submissions.append(Submission("chaos", n, prompt, params, 202, {"jobId": job_id}, job_id, 0.1))
        run.stored[job_id] = Job(
            job_id=job_id,
            owner=CALLERS[n].owner,
            status=status,
            prompt=prompt,
            params=GptImageParams.model_validate(params),
            credit_cost=4,
            created_at=T0,
            updated_at=T0,
            completed_at=T0 + timedelta(seconds=20),
            deadline_at=T0 + timedelta(seconds=60),
            upstream_tasks=[UpstreamTask(slot=0, task_id=task)],
            error="content policy violation" if status is JobStatus.FAILED else None,
        )
        failed = status is JobStatus.FAILED
        run.views.own[job_id] = (
            200,
            {
                "id": job_id,
                "prompt": prompt,
                "creditCost": 0 if failed else 4,
                "error": run.stored[job_id].error,
            },
        )
        run.views.other[job_id] = 404
        run.records.append(
            TaskRecord(
                protocol="apiframe",
                task_id=task,
                idempotency_key=f"imagegen-{job_id}-0",
                prompt=prompt,
                count=1,
                outcome="fail" if failed else "succeed",
                status="failed" if failed else "completed",
                created_at=T0 + timedelta(seconds=1),
                finished_at=T0 + timedelta(seconds=5),
            )
        )
    return run


def test_a_healthy_run_passes_every_check():
    report = healthy_run().report()

    assert report.passed, report.table()
    assert len([row for row in report.rows if row.ok is not None]) >= 9


def test_a_failed_job_behind_a_500_is_no_charge():
    run = healthy_run()
    _behind_a_500(run, JobStatus.FAILED)

    verdicts = run.verdicts()

    assert verdicts["a submit answered 5xx leaves no charged job"] is True
    assert verdicts["every job terminal by its deadline (+10 s)"] is True
    assert verdicts["no submit answered a 5xx but 503"] is False  # the 500 itself is still one


def test_submits_accepted_after_overload_503s_pass():
    run = healthy_run()
    run.submissions[0].server_errors = [503, 503]

    report = run.report()

    assert report.passed, report.table()
    assert "2 to 1 submits" in report.table()


def _late(run: Run) -> None:
    run.stored["job-0"].completed_at = T0 + timedelta(seconds=60 + 11)


def _never_ended(run: Run) -> None:
    run.stored["job-0"].status, run.stored["job-0"].completed_at = JobStatus.PROCESSING, None


def _stored_with_another_prompt(run: Run) -> None:
    run.stored["job-0"].prompt = run.submissions[1].prompt


def _stored_for_another_owner(run: Run) -> None:
    run.stored["job-1"].owner = CALLERS[0].owner


def _stored_with_other_params(run: Run) -> None:
    run.stored["job-0"].params = GptImageParams(quality="high")


def _other_key_reads_it(run: Run) -> None:
    run.views.other["job-1"] = 200


def _owner_reads_another_job(run: Run) -> None:
    run.views.own["job-0"] = (200, {**run.views.own["job-0"][1], "prompt": "someone else's"})


def _two_tasks_for_one_slot(run: Run) -> None:
    run.records.append(dataclasses.replace(run.records[0], task_id="task-0-again"))


def _completed_on_a_task_it_did_not_record(run: Run) -> None:
    run.stored["job-0"].upstream_tasks = [UpstreamTask(slot=0, task_id="task-of-nobody")]


def _task_of_an_unknown_job(run: Run) -> None:
    run.records.append(dataclasses.replace(run.records[0], task_id="t9", idempotency_key=None, prompt="lost"))


def _task_rendering_another_prompt(run: Run) -> None:
    run.records[0] = dataclasses.replace(run.records[0], prompt=run.submissions[1].prompt)


def _failed_but_charged(run: Run) -> None:
    run.views.own["job-1"][1]["creditCost"] = 4


def _failed_without_a_reason(run: Run) -> None:
    run.views.own["job-1"][1]["error"] = " "


def _answered_500(run: Run) -> None:
    run.submissions[0].status, run.submissions[0].job_id = 500, None
    run.submissions[0].server_errors = [500]


def _answered_500_then_accepted_on_a_retry(run: Run) -> None:
    run.submissions[0].server_errors = [503, 500]


def _not_answered(run: Run) -> None:
    lost = run.submissions[0]
    lost.status, lost.answer, lost.job_id = None, "ReadTimeout: timed out", None


def _charged_behind_an_overload_503(run: Run) -> None:
    _behind_a_500(run, JobStatus.COMPLETED)
    run.submissions[-1].status, run.submissions[-1].server_errors = 202, [503]


def _same_job_id_twice(run: Run) -> None:
    run.submissions[1].job_id = "job-0"


def _behind_a_500(run: Run, status: JobStatus) -> None:
    prompt = "chaos-x burst 7 #m7"
    run.submissions.append(
        Submission("burst", 1, prompt, {"quality": "low"}, 500, {"error": {}}, None, 0.1, server_errors=[500])
    )
    job = run.stored["job-0"].model_copy(update={"job_id": "job-7", "prompt": prompt, "status": status})
    if not status.is_terminal:
        job.completed_at = None
    run.stored["job-7"] = job


def _charged_behind_a_500(run: Run) -> None:
    _behind_a_500(run, JobStatus.COMPLETED)


def _open_forever_behind_a_500(run: Run) -> None:
    _behind_a_500(run, JobStatus.PROCESSING)


@pytest.mark.parametrize(
    ("defect", "failing"),
    [
        (_late, "every job terminal by its deadline (+10 s)"),
        (_never_ended, "every job terminal by its deadline (+10 s)"),
        (_stored_with_another_prompt, "stored job = its own request (owner, prompt, params)"),
        (_stored_for_another_owner, "stored job = its own request (owner, prompt, params)"),
        (_stored_with_other_params, "stored job = its own request (owner, prompt, params)"),
        (_other_key_reads_it, "GET answers the owner with its job, the other key 404"),
        (_owner_reads_another_job, "GET answers the owner with its job, the other key 404"),
        (_two_tasks_for_one_slot, "at most one upstream task per job slot (the recorded one)"),
        (_completed_on_a_task_it_did_not_record, "at most one upstream task per job slot (the recorded one)"),
        (_task_of_an_unknown_job, "at most one upstream task per job slot (the recorded one)"),
        (_task_rendering_another_prompt, "upstream tasks render their own job's prompt"),
        (_failed_but_charged, "every FAILED job refunded (creditCost 0) with a reason"),
        (_failed_without_a_reason, "every FAILED job refunded (creditCost 0) with a reason"),
        (_answered_500, "no submit answered a 5xx but 503"),
        (_answered_500_then_accepted_on_a_retry, "no submit answered a 5xx but 503"),
        (_not_answered, "every submit was answered"),
        (_charged_behind_an_overload_503, "a submit answered 5xx leaves no charged job"),
        (_same_job_id_twice, "every accepted submit got its own job id"),
        (_charged_behind_a_500, "a submit answered 5xx leaves no charged job"),
        (_open_forever_behind_a_500, "every job terminal by its deadline (+10 s)"),
    ],
)
def test_each_defect_fails_its_check(defect: Callable[[Run], Any], failing: str):
    run = healthy_run()
    defect(run)

    verdicts = run.verdicts()

    assert verdicts[failing] is False
    assert not run.report().passed
