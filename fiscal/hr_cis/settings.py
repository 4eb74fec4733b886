"""An integration's settings for Croatian fiscalization, stored as JSON with the integration."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from fiscal.hr_cis.oib import is_valid_oib
from schemas.invoice import PaymentMethod, payment_mode_key

# NacinPlacanjaType in FiskalizacijaSchema.xsd v1.9 allows G, K, T, O only: cheques
# (C) are no longer fiscalized since 1 Sep 2025 (spec v2.6, changes list), so a
# cheque is reported as O (other), as the spec says for any unlisted method.
CisPaymentCode = Literal["G", "K", "T", "O"]

DEFAULT_PAYMENT_METHODS: dict[PaymentMethod, CisPaymentCode] = {
    PaymentMethod.CASH: "G",
    PaymentMethod.CARD: "K",
    PaymentMethod.BANK_TRANSFER: "T",
    PaymentMethod.CHEQUE: "O",
    PaymentMethod.OTHER: "O",
}

TaxCategory = Literal["vat", "pnp", "exempt", "not_subject", "margin", "fee"]


class TaxTreatment(BaseModel):
    """Where the amounts under one source tax go in the fiscal record."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    category: TaxCategory = Field(
        description="vat: a Pdv row; pnp: consumption tax; exempt: IznosOslobPdv; "
        "not_subject: IznosNePodlOpor; margin: IznosMarza; fee: a Naknade entry"
    )
    rate: Decimal | None = Field(
        default=None, description="for vat/pnp: the rate; default the source tax's own"
    )
    name: str | None = Field(default=None, max_length=100, description="for fee: its name")


_PREMISES = re.compile(r"[0-9a-zA-Z]{1,20}")
_DEVICE = re.compile(r"[1-9][0-9]{0,19}")


def _oib(value: str, what: str) -> str:
    if not is_valid_oib(value):
        raise ValueError(
            f"{what} must be a valid OIB: 11 digits whose last is the ISO 7064 check digit,"
            f" got {value!r}"
        )
    return value


class FiscalSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    oib: str = Field(description="OIB of the business (obveznik fiskalizacije)")
    in_vat_system: bool = True
    sequence_mark: Literal["P", "N"] = Field(
        default="P", description="invoice numbers run per premises (P) or per device (N)"
    )
    premises_code: str = Field(description="OznPosPr: 1-20 letters and digits")
    device_code: str = Field(description="OznNapUr: a number without leading zeros")
    operator_oib: str
    payment_methods: dict[PaymentMethod, CisPaymentCode] = Field(
        default_factory=lambda: dict(DEFAULT_PAYMENT_METHODS)
    )
    payment_mode_codes: dict[str, CisPaymentCode] = Field(
        default_factory=dict,
        description="overrides by the source's payment mode (lowercase without spaces, "
        "e.g. Zoho 'autotransaction'); otherwise the mode's canonical method decides (the "
        "connector maps modes to methods)",
    )
    default_payment: CisPaymentCode | None = Field(
        default=None, description="NacinPlac of an invoice without recorded payments"
    )
    tax_mapping: dict[str, TaxTreatment] = Field(
        default_factory=dict,
        description="source tax id -> treatment; '' for amounts without any tax, "
        "'charge:adjustment' / 'charge:rounding' / 'charge:discount_after_tax' for charges",
    )

    @field_validator("oib")
    @classmethod
    def _check_oib(cls, value: str) -> str:
        return _oib(value, "the business OIB")

    @field_validator("operator_oib")
    @classmethod
    def _check_operator_oib(cls, value: str) -> str:
        return _oib(value, "the operator OIB")

    @field_validator("premises_code")
    @classmethod
    def _check_premises(cls, value: str) -> str:
        if not _PREMISES.fullmatch(value):
            raise ValueError(
                "the premises code (oznaka poslovnog prostora) must be 1-20 letters A-Z/a-z"
                f" or digits, as registered with the tax authority; got {value!r}"
            )
        return value

    @field_validator("device_code")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if not _DEVICE.fullmatch(value):
            raise ValueError(
                "the device code (oznaka naplatnog uredjaja) must be a number of 1-20 digits"
                f" without leading zeros, e.g. 1; got {value!r}"
            )
        return value

    @field_validator("payment_methods")
    @classmethod
    def _complete_payment_methods(
        cls, value: dict[PaymentMethod, CisPaymentCode]
    ) -> dict[PaymentMethod, CisPaymentCode]:
        # A partial mapping from the portal keeps the defaults for the methods it omits.
        return {**DEFAULT_PAYMENT_METHODS, **value}

    @field_validator("payment_mode_codes")
    @classmethod
    def _complete_payment_mode_codes(
        cls, value: dict[str, CisPaymentCode]
    ) -> dict[str, CisPaymentCode]:
        return {payment_mode_key(k): v for k, v in value.items()}

    def payment_code(self, method: PaymentMethod) -> CisPaymentCode:
        return self.payment_methods[method]
