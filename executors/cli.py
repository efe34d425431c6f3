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
    scope: Annotated[
        str, typer.Option(help="read (look only) or write (also submit, cancel, upload...).")
    ] = "write",
    expires_in: Annotated[
        str | None, typer.Option(help="Lifetime, e.g. 30d, 12h, 90m (s, m, h, d, w).")
    ] = None,
    expires_at: Annotated[
        str | None,
        typer.Option(help="Expiry as ISO 8601, e.g. 2030-01-31T12:00Z (UTC if no zone)."),
    ] = None,
    rate_limit: Annotated[
        int | None,
        typer.Option(help="This token's requests per minute (0: unlimited); default: server's."),
    ] = None,
) -> None:
    """Create a token; it is printed alone on the last line and stored only hashed."""
    from datetime import UTC, datetime

    from api.auth.scopes import parse_scope
    from api.auth.tokens import TokenStore, parse_duration, parse_instant

    if expires_in and expires_at:
        raise typer.BadParameter("give --expires-in or --expires-at, not both")
    try:
        granted = parse_scope(scope)
        expiry = (
            datetime.now(UTC) + parse_duration(expires_in)
            if expires_in
            else parse_instant(expires_at)
            if expires_at
            else None
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if expiry is not None and expiry <= datetime.now(UTC):
        raise typer.BadParameter(f"the expiry {expiry.isoformat()} is in the past")
    if rate_limit is not None and rate_limit < 0:
        raise typer.BadParameter("--rate-limit must be 0 (unlimited) or more")
    token = TokenStore(Settings().resolved_home).create(
        tenant,
        user,
        project or [],
        scopes=[granted.value],
        expires_at=expiry,
        rate_limit_per_minute=rate_limit,
    )
    where = ", ".join(project) if project else "all projects"
    until = f", expires {expiry.isoformat()}" if expiry else ""
    typer.echo(
        f"{granted.value} token for user {user!r}, tenant {tenant!r}, {where}{until}:", err=True
    )
    typer.echo(token)


@token_app.command("list")
def token_list(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """List the tokens: ids, grants, dates and the last 4 characters — never a token."""
    import json

    from api.auth.tokens import TokenStore

    tokens = TokenStore(Settings().resolved_home).list_tokens()
    if as_json:
        typer.echo(json.dumps(tokens, indent=2))
        return
    columns = ["tokenId", "tenant", "user", "projects", "scopes", "created", "expires", "revoked"]
    typer.echo("\t".join([*columns, "last4"]))
    for t in tokens:
        cells = [",".join(v) if isinstance(v := t[c], list) else str(v or "-") for c in columns]
        typer.echo("\t".join([*cells, f"…{t['last4']}" if t["last4"] else "-"]))


@token_app.command("revoke")
def token_revoke(
    ref: Annotated[str, typer.Argument(help="The token id (from `token list`) or the token.")],
) -> None:
    """Revoke a token; the running API refuses it from its next request on."""
    from api.auth.tokens import TokenStore

    try:
        revoked = TokenStore(Settings().resolved_home).revoke(ref)
    except LookupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"revoked token {revoked['tokenId']} (user {revoked['user']!r}, "
        f"tenant {revoked['tenant']!r}) at {revoked['revoked']}"
    )


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
