"""Run each job type once on one log through the API and print the run times.

Usage: python bench/job_types.py URL TENANT PROJECT TOKEN LOGFILE
(`make run` prints the first four; they are also in .pmjobs/dev-token.json).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from api.client import PmJobsClient

JOBS = [
    ("ProcessMining", {}),
    ("ProcessMining", {"analysisType": "quick"}),
    ("DataEnrichment", {"workingCalendar": {"days": [0, 1, 2, 3, 4]}}),
    ("Analysis", {"slaHours": 24 * 30}),
    ("Notebook", {}),
]


def main() -> None:
    url, tenant, project, token, log = sys.argv[1:6]
    client = PmJobsClient(url, tenant, project, token, timeout=600)
    t0 = time.monotonic()
    dataset = client.upload(Path(log))
    print(f"upload {Path(log).name}: {time.monotonic() - t0:.1f} s, {dataset['events']:,} events")
    for job_type, extra in JOBS:
        body = {
            "jobName": f"bench {job_type} {extra.get('analysisType', '')}".strip(),
            "jobType": job_type,
            "parameters": {"datasetId": dataset["datasetId"], **extra},
        }
        t0 = time.monotonic()
        job = client.wait(client.submit(body)["jobId"], timeout=3600, poll=1)
        wall = time.monotonic() - t0
        print(
            f"{body['jobName']:<32} {job['status']:<10} submit→done {wall:7.1f} s   "
            f"run {job['durationSeconds'] or 0:7.1f} s   RSS at end "
            f"{job['execution']['memoryUsage']}   {job.get('error') or ''}"
        )


if __name__ == "__main__":
    main()
