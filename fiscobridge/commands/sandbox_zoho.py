"""`fiscobridge sandbox zoho`: the local stand-in for Zoho Books (OAuth, API, webhooks)."""

from __future__ import annotations

import click


@click.command("zoho")
@click.option(
    "--port",
    type=int,
    default=8470,
    show_default=True,
    help="first of four ports: com accounts, com api, eu accounts, eu api (0: any free)",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--seed", type=int, default=None, help="seed for webhook drop/duplicate draws")
@click.option("--access-token-ttl", type=click.IntRange(min=1), default=3600, show_default=True)
@click.option("--code-ttl", type=click.IntRange(min=1), default=60, show_default=True)
@click.option("--client-id", default=None, help="register an OAuth client with this id")
@click.option("--client-secret", default=None, help="... and this secret")
@click.option(
    "--redirect-uri",
    "redirect_uris",
    multiple=True,
    help="redirect URI of that client (repeatable) [default: the portal's local callback]",
)
@click.option(
    "--demo",
    is_flag=True,
    help="also create users demo@com.example / demo@eu.example (password 'sandbox') "
    "with one organization each",
)
def zoho(
    port: int,
    host: str,
    seed: int | None,
    access_token_ttl: int,
    code_ttl: int,
    client_id: str | None,
    client_secret: str | None,
    redirect_uris: tuple[str, ...],
    demo: bool,
) -> None:
    """Serve Zoho Books in two data centres (com, eu): /oauth/v2/* on the accounts
    servers, /books/v3/* on the API domains, and /_sandbox/* admin on all four."""
    from sandbox.zoho.server import ZohoSandbox, wait_forever
    from sandbox.zoho.state import Settings

    sandbox = ZohoSandbox(
        host,
        port,
        seed=seed,
        settings=Settings(access_token_ttl=access_token_ttl, code_ttl=code_ttl),
    )
    books = sandbox.books
    if client_id or client_secret or redirect_uris:
        client = books.add_client(
            list(redirect_uris) or ["http://127.0.0.1:8000/integrations/oauth/callback"],
            client_id,
            client_secret,
        )
        click.echo(f"OAuth client  {client.client_id} (secret {client.client_secret})")
        click.echo(f"  redirect    {', '.join(client.redirect_uris)}")
    if demo:
        for dc in ("com", "eu"):
            user = books.add_user(f"demo@{dc}.example", "sandbox", dc)
            org = books.add_organization(
                f"Demo {dc.upper()} d.o.o.", [user.email], "Europe/Zagreb", "EUR"
            )
            click.echo(
                f"user          {user.email} / sandbox -> organization {org.organization_id}"
            )
    sandbox.start_in_thread()
    for key, urls in sandbox.urls.items():
        click.echo(
            f"{key:<4} accounts {urls['accounts']}  api {urls['api']}  location={urls['location']}"
        )
    click.echo(f"admin         {sandbox.admin_url}/  (clients, users, orgs, invoices, limits, ...)")
    click.echo("Ctrl+C to stop")
    wait_forever()
    sandbox.stop()


COMMANDS: list[click.Command] = [zoho]
