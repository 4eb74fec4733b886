"""`fiscobridge run <service>` with the wrong FISCOBRIDGE_MASTER_KEY stops at start-up with
the vault's message, before it connects to Kafka or serves anything."""

from __future__ import annotations

import asyncio
import base64
import os
import sys
from pathlib import Path

import pytest

from fiscal.hr_cis.certificate import FiscalCertificate
from fiscal.hr_cis.settings import FiscalSettings
from fiscobridge.stack import free_port
from runtime.store import Store
from runtime.vault import Vault, parse_keys
from tests.fixtures.certs import Pfx

# The port each service would listen on (if it got that far).
PORTS = {
    "poller": "FISCOBRIDGE_POLLER_OPS_PORT",
    "portal": "FISCOBRIDGE_PORTAL_PORT",
    "ingest": "FISCOBRIDGE_INGEST_PORT",
}


@pytest.mark.parametrize("service", sorted(PORTS))
async def test_a_wrong_master_key_fails_the_service_at_start(
    service: str,
    tmp_path: Path,
    master_key: str,
    demo_pfx: Pfx,
    demo_certificate: FiscalCertificate,
    fiscal_settings: FiscalSettings,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'fiscobridge.db'}"
    store = Store.open(url, vault=Vault(parse_keys(master_key)))
    try:
        await store.migrate()
        account, _ = await store.accounts.ensure("owner@obrt.hr")
        await store.integrations.create(
            account_id=account.account_id, fiscal_settings=fiscal_settings,
            pfx=demo_pfx.data, password=demo_pfx.password, certificate=demo_certificate,
        )
    finally:
        await store.close()
    # The same key id, other key bytes: the operator pasted the wrong key.
    key_id = master_key.partition(":")[0]
    wrong = base64.b64encode(os.urandom(32)).decode()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("FISCOBRIDGE_", "KAFKA_"))},
        "FISCOBRIDGE_HOME": str(tmp_path / "home"),
        "FISCOBRIDGE_DATABASE_URL": url,
        "FISCOBRIDGE_MASTER_KEY": f"{key_id}:{wrong}",
        # Nothing listens there: a service that got past the key check would fail on
        # Kafka instead, with another message.
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        PORTS[service]: str(free_port()),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fiscobridge", "run", service,
        env=env, cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    output = (out + err).decode()
    assert process.returncode != 0, output
    assert "DecryptionFailed" in output, output
    assert f"master key {key_id!r} from FISCOBRIDGE_MASTER_KEY cannot decrypt" in output
    assert "not the key they were written with" in output
    assert "Kafka" not in output and "listening" not in output and "started" not in output
    for key in (wrong, master_key.partition(":")[2]):
        assert key not in output
