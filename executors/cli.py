"""The ``pmjobs`` command line: run the stack, manage tokens, watch jobs."""

from __future__ import annotations

from typing import Annotated

import typer

from api.settings import Settings

app = typer.Typer(help="pmjobs — Job Execution API for process mining.", no_args_is_help=True)
token_app = typer.Typer(help="Manage API tokens.", no_args_is_help=True)
job_app = typer.Typer(help="Work with jobs over the API.", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(job_app, name="job")


@app.command()
def up(
    nodes: Annotated[int | None, typer.Option(help="Execution nodes to start.")] = None,
    capacity: Annotated[int | None, typer.Option(help="Concurrent jobs per node.")] = None,
) -> None:
    """Start Prefect, the execution nodes and the API; Ctrl-C stops them all."""
    from executors.supervisor import up as run_up

    overrides = {k: v for k, v in {"nodes": nodes, "node_capacity": capacity}.items() if v}
    run_up(Settings(**overrides))


@app.command()
def node(
    name: Annotated[str, typer.Option(help="Node name (the Prefect worker name).")],
    capacity: Annotated[int, typer.Option(help="Concurrent jobs.")] = 2,
) -> None:
    """Run one execution node (a Prefect process worker); `pmjobs up` starts these for you."""
    from executors.node import main

    main(name, capacity, Settings().work_pool)


@app.command()
def notifier() -> None:
    """Send job notifications (e-mail, webhook); `pmjobs up` starts this for you."""
    from executors.notifier import main

    main()


@token_app.command("create")
def token_create(
    tenant: Annotated[str, typer.Option(help="Tenant the token grants.")],
    user: Annotated[str, typer.Option(help="User name; becomes submittedBy.")],
    project: Annotated[list[str] | None, typer.Option(help="Limit to these projects.")] = None,
) -> None:
    """Create a token; it is printed alone on the last line and stored only hashed."""
    from api.auth.tokens import TokenStore

    token = TokenStore(Settings().resolved_home).create(tenant, user, project or [])
    scope = ", ".join(project) if project else "all projects"
    typer.echo(f"token for user {user!r}, tenant {tenant!r}, {scope}:", err=True)
    typer.echo(token)


@job_app.command("watch")
def job_watch(
    job_id: str,
    url: Annotated[str, typer.Option(envvar="PMJOBS_URL")] = "http://127.0.0.1:8000",
    tenant: Annotated[str, typer.Option(envvar="PMJOBS_TENANT")] = "",
    project: Annotated[str, typer.Option(envvar="PMJOBS_PROJECT")] = "",
    token: Annotated[str, typer.Option(envvar="PMJOBS_TOKEN")] = "",
) -> None:
    """Follow a job with a progress bar until it finishes."""
    from api.client import PmJobsClient, watch_with_progress

    client = PmJobsClient(url, tenant, project, token)
    job = watch_with_progress(client, job_id)
    typer.echo(f"{job['status']}: {job.get('error') or job['progress']['currentStage']}")
    raise typer.Exit(0 if job["status"] == "Completed" else 1)


if __name__ == "__main__":
    app()
