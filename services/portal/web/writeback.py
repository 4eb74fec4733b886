"""The write-back mapping page: which Zoho custom field receives each fiscal value (fiscal
number, ZKI, JIR, QR URL) on invoices, and on credit notes (their storno's values).

The choices are the organization's own custom fields, listed from Zoho Books with the
integration's grant; when Zoho cannot list them, the ids can still be typed. Saving
goes through runtime/writeback_mapping.py, as the CLI does: stored, then announced, so
the write-back stage writes back whatever waited for a mapping. Bad input is refused
with what is wrong, and nothing is changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from connectors.zoho.errors import ZohoError
from connectors.zoho.writeback import CREDIT_NOTE_PREFIX, ROLES
from runtime.store import IntegrationRecord, IntegrationStatus
from runtime.writeback_mapping import set_mapping
from schemas.events import IntegrationEvent
from services.portal.web.context import Portal, announce, log, portal_of, render
from services.portal.web.sessions import session_of
from services.portal.web.zoho_books import books_client

router = APIRouter()

ROLE_LABELS = {"fiscal_number": "Fiscal number", "zki": "ZKI (protection code)",
               "jir": "JIR (receipt id)", "qr_url": "QR code URL"}
DOCUMENTS = (("invoice", "Invoices", ""), ("creditnote", "Credit notes", CREDIT_NOTE_PREFIX))
MAX_ID_LENGTH = 40


@dataclass(frozen=True)
class Choice:
    customfield_id: str
    label: str


async def _choices(
    portal: Portal, record: IntegrationRecord
) -> tuple[dict[str, list[Choice]] | None, str | None]:
    """The organization's custom fields per module, or None and why they are not listed."""
    client = await books_client(portal, record)
    if isinstance(client, str):
        return None, client
    uid = record.uid
    try:
        listed = {"invoice": await client.invoice_custom_fields(),
                  "creditnote": await client.credit_note_custom_fields()}
    except ZohoError as error:
        log.warning("listing Zoho custom fields failed",
                    extra={"integration_uid": uid, "error": type(error).__name__})
        return None, f"Zoho Books did not list the custom fields ({error})"
    return {
        entity: [Choice(str(f.get("customfield_id")), str(f.get("label") or f.get("api_name")))
                 for f in fields if f.get("customfield_id") not in (None, "")
                 and f.get("is_active", True) is not False]
        for entity, fields in listed.items()
    }, None


def check(
    form: Mapping[str, str], choices: dict[str, list[Choice]] | None
) -> tuple[dict[str, str], dict[str, str]]:
    """The mapping the form asks for (role -> customfield_id, empty ones left out) and
    the problems, by role: a field id that is not a Zoho id, not one of the
    organization's fields of that module, or the same field for two values."""
    mapping: dict[str, str] = {}
    problems: dict[str, str] = {}
    for entity, title, prefix in DOCUMENTS:
        known = {c.customfield_id for c in choices[entity]} if choices is not None else None
        used: dict[str, str] = {}
        for role in ROLES:
            name = prefix + role
            value = form.get(name, "").strip()
            if not value:
                continue
            what = f"{title}, {ROLE_LABELS[role]}"
            if not value.isdigit() or len(value) > MAX_ID_LENGTH:
                problems[name] = (f"{what}: {value[:MAX_ID_LENGTH]!r} is not a Zoho custom field"
                                  " id (digits only, as Zoho shows it)")
            elif known is not None and value not in known:
                problems[name] = (f"{what}: field {value} is not one of this organization's"
                                  f" {title.lower()} custom fields in Zoho Books")
            elif value in used:
                problems[name] = (f"{what}: the same custom field is already chosen for"
                                  f" {ROLE_LABELS[used[value]]}; each value needs its own field")
            else:
                used[value] = role
                mapping[name] = value
    return mapping, problems


def _page(
    request: Request, record: IntegrationRecord, values: Mapping[str, str],
    choices: dict[str, list[Choice]] | None, unlisted: str | None,
    problems: Mapping[str, str] | None = None, status: int = 200,
) -> Response:
    return render(
        request, "writeback.html", status, record=record, values=values, choices=choices,
        unlisted=unlisted, problems=problems or {}, documents=DOCUMENTS, roles=ROLES,
        labels=ROLE_LABELS, editable=record.status is not IntegrationStatus.REMOVED,
    )


@router.get("/integrations/{uid}/writeback")
async def writeback_page(request: Request, uid: str) -> Response:
    portal = portal_of(request)
    record = await portal.owned_integration(request, uid)
    choices, unlisted = await _choices(portal, record)
    return _page(request, record, record.writeback_fields, choices, unlisted)


@router.post("/integrations/{uid}/writeback")
async def save_writeback(request: Request, uid: str) -> Response:
    portal = portal_of(request)
    record = await portal.owned_integration(request, uid)
    if record.status is IntegrationStatus.REMOVED:
        return _page(request, record, record.writeback_fields, None,
                     "The integration is removed", {"": "A removed integration writes nothing"
                                                    " back; nothing was changed."}, 409)
    form = {k: str(v) for k, v in (await request.form()).items()}
    choices, unlisted = await _choices(portal, record)
    mapping, problems = check(form, choices)
    if problems:
        return _page(request, record, form, choices, unlisted, problems, 400)

    async def announced(event: IntegrationEvent) -> None:
        await announce(
            portal, event,
            failure="The mapping was saved, but the write-back stage was not told: invoices "
                    "that wait for it are written back once it is saved again. Save it again "
                    "in a minute.",
        )

    await set_mapping(portal.store.integrations, announced, uid, mapping,
                      by="the owner in the portal")
    log.info("write-back mapping set", extra={"integration_uid": uid,
                                              "roles": sorted(mapping)})
    session_of(request).flash(
        "Write-back mapping saved. Fiscalized invoices and credit notes that waited for it "
        "are written back to Zoho Books shortly." if mapping else
        "Write-back mapping cleared: nothing is written back to Zoho Books."
    )
    return RedirectResponse(f"/integrations/{uid}/writeback", status_code=303)
