"""Accounts, users, integrations and their credentials, poll state.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from runtime.store.types import UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("account_id", sa.String(32), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_users_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
    )
    op.create_index(op.f("ix_users_account_id"), "users", ["account_id"])
    op.create_table(
        "integrations",
        sa.Column("uid", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(32), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("tier", sa.String(16), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("fiscal_profile", sa.String(32), nullable=False),
        sa.Column("fiscal_settings", sa.JSON(), nullable=False),
        sa.Column("zoho_organization_id", sa.String(64), nullable=True),
        sa.Column("zoho_accounts_server", sa.String(200), nullable=True),
        sa.Column("zoho_api_domain", sa.String(200), nullable=True),
        sa.Column("webhook_secret", sa.LargeBinary(), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'active', 'inactive', 'removed')",
            name=op.f("ck_integrations_status"),
        ),
        sa.CheckConstraint(
            "tier IN ('trial', 'starter', 'growth', 'scale')", name=op.f("ck_integrations_tier")
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_integrations_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("uid", name=op.f("pk_integrations")),
    )
    op.create_index(op.f("ix_integrations_account_id"), "integrations", ["account_id"])
    op.create_table(
        "certificates",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("integration_uid", sa.String(64), nullable=False),
        sa.Column("pfx", sa.LargeBinary(), nullable=False),
        sa.Column("password", sa.LargeBinary(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("serial", sa.String(128), nullable=False),
        sa.Column("oib", sa.String(11), nullable=False),
        sa.Column("fingerprint_sha256", sa.String(64), nullable=False),
        sa.Column("not_before", UtcDateTime(), nullable=False),
        sa.Column("not_after", UtcDateTime(), nullable=False),
        sa.Column("uploaded_at", UtcDateTime(), nullable=False),
        sa.Column("is_current", sa.Boolean(), nullable=False),
        sa.Column("replaced_at", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["integration_uid"],
            ["integrations.uid"],
            name=op.f("fk_certificates_integration_uid_integrations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_certificates")),
    )
    op.create_index(
        op.f("ix_certificates_integration_uid"), "certificates", ["integration_uid"]
    )
    op.create_index(
        "uq_certificates_current",
        "certificates",
        ["integration_uid"],
        unique=True,
        sqlite_where=sa.text("is_current"),
        postgresql_where=sa.text("is_current"),
    )
    op.create_table(
        "oauth_tokens",
        sa.Column("integration_uid", sa.String(64), nullable=False),
        sa.Column("refresh_token", sa.LargeBinary(), nullable=False),
        sa.Column("access_token", sa.LargeBinary(), nullable=True),
        sa.Column("access_expires_at", UtcDateTime(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["integration_uid"],
            ["integrations.uid"],
            name=op.f("fk_oauth_tokens_integration_uid_integrations"),
        ),
        sa.PrimaryKeyConstraint("integration_uid", name=op.f("pk_oauth_tokens")),
    )
    op.create_table(
        "poll_state",
        sa.Column("integration_uid", sa.String(64), nullable=False),
        sa.Column("watermark", UtcDateTime(), nullable=True),
        sa.Column("lease_holder", sa.String(200), nullable=True),
        sa.Column("lease_expires_at", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["integration_uid"],
            ["integrations.uid"],
            name=op.f("fk_poll_state_integration_uid_integrations"),
        ),
        sa.PrimaryKeyConstraint("integration_uid", name=op.f("pk_poll_state")),
    )


def downgrade() -> None:
    op.drop_table("poll_state")
    op.drop_table("oauth_tokens")
    op.drop_index("uq_certificates_current", table_name="certificates")
    op.drop_index(op.f("ix_certificates_integration_uid"), table_name="certificates")
    op.drop_table("certificates")
    op.drop_index(op.f("ix_integrations_account_id"), table_name="integrations")
    op.drop_table("integrations")
    op.drop_index(op.f("ix_users_account_id"), table_name="users")
    op.drop_table("users")
    op.drop_table("accounts")
