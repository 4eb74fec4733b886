"""The CIS error codes (spec v2.6 §2 code lists and §13, plus the 2026 service's
s013) and what each means for us.

`permanence` answers one question: can sending the message again, unchanged but
re-signed, succeed? Only the service's own failure (s006) passes that test; every
other code needs a person (or a different message) first, and `action` says what.
s007-s013 answer the messages that follow a fiscalized invoice (a change of payment
method or buyer OIB, a tip) and the 2026 restrictive checks; resending the same data
finds the same fault, so they are permanent too.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Permanence(StrEnum):
    PERMANENT = "permanent"
    TRANSIENT = "transient"


@dataclass(frozen=True)
class CisErrorCode:
    code: str
    permanence: Permanence
    meaning: str
    action: str


P = Permanence.PERMANENT
_REPORT_BUG = "report the invoice to FiscoBridge support: resending the same message will not help."
_WORKING_HOURS = "Correct the business premises' working hours in the request and send it again."
_RESEND = (
    " in the Client Portal (Replace certificate), then resend the invoice from its page;"
    " it keeps its fiscal number."
)
_PROVJERA = (
    "Found by the test service's invoice check (provjera); correct the invoice data before"
    " fiscalizing such invoices in production."
)

_CODES: dict[str, tuple[Permanence, str, str]] = {
    # Common to every method (spec §2.1.4, §2.1.5.4, §2.3, §2.8.5).
    "s001": (
        P,
        "The message does not conform to the XML schema.",
        "Check the invoice fields named in the error (e.g. the business premises or"
        " device label, the invoice number); if they look right, " + _REPORT_BUG,
    ),
    "s002": (
        P,
        "The certificate is not issued by a trusted Croatian issuer, or it has expired or"
        " been revoked.",
        "Replace the integration's certificate with a valid fiscal certificate from FINA (or"
        " another trusted Croatian issuer)" + _RESEND,
    ),
    "s003": (
        P,
        "The certificate lacks a mandatory field (the OIB).",
        "Replace the integration's certificate with a fiscal application certificate issued"
        " to the business's OIB" + _RESEND,
    ),
    "s004": (
        P,
        "The digital signature is invalid.",
        "Upload the certificate (PFX) and its password again; if the error persists, "
        + _REPORT_BUG,
    ),
    "s005": (
        P,
        "The OIB in the message differs from the OIB in the certificate.",
        "Replace the integration's certificate with the one issued to the integration's"
        " OIB" + _RESEND,
    ),
    "s006": (
        Permanence.TRANSIENT,
        "System error at the tax authority while processing the request.",
        "Nothing: FiscoBridge sends the invoice again automatically.",
    ),
    # Payment-method change (promijeniNacPlac, §2.1.5.4; replaced by
    # promijeniPodatkeRacuna in 2026, the codes stay in the service's list).
    "s007": (
        P,
        "The invoice date in a payment-method change is not today.",
        "The change can no longer be sent (only until midnight of the day of issue):"
        " issue a storno of the invoice and a new invoice with the right payment method.",
    ),
    "s008": (
        P,
        "The invoice in the payment-method change differs from the fiscalized one, or it"
        " was never fiscalized.",
        "Check that the invoice has a JIR and that the change carries its number, premises,"
        " device, date-time, total and ZKI exactly as fiscalized; " + _REPORT_BUG,
    ),
    # Tips (napojnica, §2.3).
    "s009": (
        P,
        "The invoice date in a tip message is more than two days in the past.",
        "Tips can be reported only within two days of the invoice; nothing more can be sent.",
    ),
    "s010": (
        P,
        "The invoice in the tip message differs from the fiscalized one, or it was never"
        " fiscalized.",
        "Check that the invoice was fiscalized and that its number, premises and device match.",
    ),
    # Invoice data change (promijeniPodatkeRacuna, §2.1.5, 2026: payment method and/or
    # buyer OIB of an invoice fiscalized the same day).
    "s011": (
        P,
        "The invoice date in an invoice data change is not today.",
        "The payment method or buyer OIB can be changed only until midnight of the day the"
        " invoice was issued: issue a storno of the invoice and a new invoice with the right"
        " payment method and buyer OIB.",
    ),
    "s012": (
        P,
        "The invoice in the data change differs from the fiscalized one, or it was never"
        " fiscalized.",
        "Check that the invoice has a JIR and that the change carries its number, premises,"
        " device, date-time, total and ZKI exactly as fiscalized; " + _REPORT_BUG,
    ),
    # The 2026 service's restrictive checks of the invoice data, enforced since 1 Jan
    # 2026 (e.g. the buyer's OIB with payment by transaction account). The v2.7 text
    # with the exact list is not in shared/specs (*uncertain*): the service's message
    # names the rule, so the action sends the person there.
    "s013": (
        P,
        "The invoice breaks one of the tax authority's restrictive rules (since 1 Jan 2026),"
        " named in the error message.",
        "Correct the invoice as the error message says (for example: no buyer OIB on an"
        " invoice paid by transaction account, where it is an e-invoice instead), then"
        " fiscalize it again.",
    ),
    # Working hours of business premises (§2.8.5).
    "s101": (
        P,
        "The business premises label does not exist or is not verified in ePorezna.",
        "Register and verify the business premises in ePorezna, or correct the label.",
    ),
    "s102": (P, "The business premises are closed or temporarily closed.", _WORKING_HOURS),
    "s103": (
        P,
        "Regular working hours must start after today and less than 45 days ahead.",
        _WORKING_HOURS,
    ),
    "s104": (
        P,
        "Each regular working hours entry must start after today and at least a day apart"
        " from its neighbours.",
        _WORKING_HOURS,
    ),
    "s105": (P, "A regular working hours start date appears more than once.", _WORKING_HOURS),
    "s106": (
        P,
        "Split regular working hours need both parts for at least one day.",
        _WORKING_HOURS,
    ),
    "s107": (P, "Identical regular working hours already exist from that date.", _WORKING_HOURS),
    "s108": (
        P,
        "An exception date may not be in the past or more than two months ahead.",
        _WORKING_HOURS,
    ),
    "s109": (P, "An exception date appears more than once.", _WORKING_HOURS),
    "s110": (P, "The requested working hours do not exist.", _WORKING_HOURS),
    "s111": (P, "The working hours to delete do not exist.", _WORKING_HOURS),
    "s112": (P, "Closing time must be at least a minute after opening time.", _WORKING_HOURS),
    "s113": (
        P,
        "The second part of split hours must open at least a minute after the first closes.",
        _WORKING_HOURS,
    ),
    "s114": (P, "The first part of split hours cannot close after 23:59.", _WORKING_HOURS),
    "s115": (P, "Single-part hours cannot open after 23:59.", _WORKING_HOURS),
    "s116": (P, "The second part of split hours must open by midnight.", _WORKING_HOURS),
    "s117": (
        P,
        "For consecutive exception dates, the later one must open after the earlier closes.",
        _WORKING_HOURS,
    ),
    "s118": (
        P,
        "Regular working hours valid from today or earlier cannot be deleted.",
        _WORKING_HOURS,
    ),
    "s119": (
        P,
        "Only the last regular working hours (or ones in a row with it) can be deleted.",
        _WORKING_HOURS,
    ),
    "s120": (P, "An exception dated in the past cannot be deleted.", _WORKING_HOURS),
    "s121": (P, "The operator's OIB is not formally valid.", _WORKING_HOURS),
    "s122": (P, "An identical exception already exists for that date.", _WORKING_HOURS),
    "s123": (P, "No working hours were sent.", _WORKING_HOURS),
    "s124": (P, "An end date is not allowed for regular working hours.", _WORKING_HOURS),
    # Invoice check in the test environment (provjera, §13). Not errors of `racuni`:
    # "permanent" here means only that resending the same data finds the same thing.
    "v100": (P, "The message is correct.", "Nothing."),
    "v101": (P, "The sending time is more than 6 hours off the processing time.", _PROVJERA),
    "v103": (P, "The issue time is more than 6 hours after the processing time.", _PROVJERA),
    "v104": (P, "The issue time is after the sending time.", _PROVJERA),
    "v105": (P, "The invoice number is 0.", _PROVJERA),
    "v106": (P, "The invoice number has more than 6 digits.", _PROVJERA),
    "v110": (P, "The VAT rate is not an allowed rate.", _PROVJERA),
    "v112": (P, "The VAT base exceeds the positive (or zero) total.", _PROVJERA),
    "v113": (P, "The VAT base is below the negative (or zero) total.", _PROVJERA),
    "v114": (P, "The VAT base has a different sign than the total.", _PROVJERA),
    "v115": (P, "The VAT amount is over 1 kn below base times rate.", _PROVJERA),
    "v116": (P, "The VAT amount is over 1 kn above base times rate.", _PROVJERA),
    "v117": (P, "The consumption tax (PNP) rate is below 0.00.", _PROVJERA),
    "v118": (P, "The consumption tax (PNP) rate is above 3.00.", _PROVJERA),
    "v120": (P, "The PNP base exceeds the positive (or zero) total.", _PROVJERA),
    "v121": (P, "The PNP base is below the negative (or zero) total.", _PROVJERA),
    "v122": (P, "The PNP base has a different sign than the total.", _PROVJERA),
    "v123": (P, "The PNP amount is over 1 kn below base times rate.", _PROVJERA),
    "v124": (P, "The PNP amount is over 1 kn above base times rate.", _PROVJERA),
    "v125": (P, "'Other taxes' are present and not 0.00.", _PROVJERA),
    "v126": (P, "The VAT-exempt amount exceeds the positive (or zero) total.", _PROVJERA),
    "v127": (P, "The VAT-exempt amount is below the negative (or zero) total.", _PROVJERA),
    "v128": (P, "The VAT-exempt amount has a different sign than the total.", _PROVJERA),
    "v129": (P, "The margin amount exceeds the positive (or zero) total.", _PROVJERA),
    "v130": (P, "The margin amount is below the negative (or zero) total.", _PROVJERA),
    "v131": (P, "The margin amount has a different sign than the total.", _PROVJERA),
    "v132": (P, "The non-taxable amount exceeds the positive (or zero) total.", _PROVJERA),
    "v133": (P, "The non-taxable amount is below the negative (or zero) total.", _PROVJERA),
    "v134": (P, "The non-taxable amount has a different sign than the total.", _PROVJERA),
    "v135": (P, "A fee exceeds 1,000.00 kn.", _PROVJERA),
    "v136": (P, "A fee is below -1,000.00 kn.", _PROVJERA),
    "v137": (P, "The total does not add up (tolerance ±0.01 kn).", _PROVJERA),
    "v139": (P, "Total over ±1 million kn for transfer or 'other' payment.", _PROVJERA),
    "v141": (P, "'Specific purpose' is not empty.", _PROVJERA),
    "v142": (P, "VAT is present although the issuer is outside the VAT system.", _PROVJERA),
    "v143": (P, "A VAT-exempt amount is present outside the VAT system.", _PROVJERA),
    "v144": (P, "A margin amount is present outside the VAT system.", _PROVJERA),
    "v145": (P, "A non-taxable amount is present outside the VAT system.", _PROVJERA),
    "v148": (P, "Total over ±75,000.00 kn for cash, card or cheque payment.", _PROVJERA),
    "v152": (P, "The invoice was delivered 2 to 5 days after it was issued.", _PROVJERA),
    "v153": (P, "The invoice was delivered more than 5 days after it was issued.", _PROVJERA),
    "v160": (P, "The VAT amount is over 0.10 EUR below base times rate.", _PROVJERA),
    "v161": (P, "The VAT amount is over 0.10 EUR above base times rate.", _PROVJERA),
    "v162": (P, "The PNP amount is over 0.10 EUR below base times rate.", _PROVJERA),
    "v163": (P, "The PNP amount is over 0.10 EUR above base times rate.", _PROVJERA),
    "v164": (P, "A fee exceeds 135.00 EUR.", _PROVJERA),
    "v165": (P, "A fee is below -135.00 EUR.", _PROVJERA),
    "v166": (P, "The total does not add up (tolerance ±0.01 EUR).", _PROVJERA),
    "v167": (P, "Total over ±150,000.00 EUR for transfer or 'other' payment.", _PROVJERA),
    "v168": (P, "Total over ±10,000.00 EUR for cash or card payment.", _PROVJERA),
}

TABLE: dict[str, CisErrorCode] = {
    code: CisErrorCode(code, permanence, meaning, action)
    for code, (permanence, meaning, action) in _CODES.items()
}


def classify(code: str) -> CisErrorCode:
    normalized = code.strip().lower()
    known = TABLE.get(normalized)
    if known is not None:
        return known
    # Unknown codes are permanent: only s006 is documented as worth retrying, and
    # retrying something we do not understand risks reporting an invoice twice or
    # retrying forever; a person should read the authority's message instead.
    shown = normalized or "(no code)"
    return CisErrorCode(
        code=shown,
        permanence=Permanence.PERMANENT,
        meaning=f"Unknown error code {shown}: not in the CIS specification (v2.6 and the"
        " 2026 additions s007-s013).",
        action="Read the tax authority's message on the invoice and contact FiscoBridge"
        " support before sending the invoice again.",
    )
