"""Column kinds from column names: email/phone/national-id keys, id-like names, name and address columns."""

from __future__ import annotations

import re
from collections.abc import Sequence

_PHONE_TOKENS = {"phone", "telephone", "tel", "mobile", "cell", "cellphone", "fax", "msisdn"}
_NATURAL_ID_TOKENS = {"ssn", "tin", "vat", "ein", "npi", "passport", "uuid", "guid", "nino"}
_NATURAL_ID_PARTS = ("nationalid", "taxid", "socialsecurity", "taxnumber", "vatnumber")
_ID_TOKENS = {"id", "key", "code", "no", "num", "number", "uuid", "guid", "ref", "sku", "pk"}
_ID_ENTITIES = {"customer", "user", "client", "account", "order", "person", "contact", "member", "employee"}
_FIRST_NAMES = {"firstname", "fname", "givenname", "forename", "first"}
_LAST_NAMES = {"lastname", "lname", "surname", "familyname", "last"}
_FULL_NAMES = {
    "name",
    "fullname",
    "customername",
    "contactname",
    "clientname",
    "personname",
    "displayname",
    "membername",
    "accountname",
}
_ORG_NAMES = {"companyname", "company", "organization", "organisation", "businessname"}
_ADDRESS_TOKENS = {"address", "addr", "street", "address1", "address2", "addr1", "addr2", "line1", "line2"}
_NOT_ADDRESS_TOKENS = {"email", "mail", "ip", "mac", "web", "url"}


def _name_tokens(column: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", column)
    return [t for t in re.split(r"[^a-z0-9]+", spaced.lower()) if t]


def _key_kind(column: str) -> str | None:
    """``email``, ``phone`` or ``natural_id`` when the column name says so."""
    tokens = _name_tokens(column)
    joined = "".join(tokens)
    if "email" in joined or "mail" in tokens:
        return "email"
    if "phone" in joined or _PHONE_TOKENS.intersection(tokens):
        return "phone"
    if _NATURAL_ID_TOKENS.intersection(tokens) or any(p in joined for p in _NATURAL_ID_PARTS):
        return "natural_id"
    return None


def _is_id_like(column: str) -> bool:
    tokens = _name_tokens(column)
    if not tokens:
        return False
    joined = "".join(tokens)
    entity_id = joined.endswith("id") and joined[:-2] in _ID_ENTITIES
    return tokens[-1] in _ID_TOKENS or entity_id


def _name_groups(columns: Sequence[str]) -> list[list[str]]:
    """Name-like columns as groups, best first: full names, first + last name together, company names."""

    def named(kinds: set[str]) -> list[str]:
        return [c for c in columns if "".join(_name_tokens(c)) in kinds]

    parts = named(_FIRST_NAMES) + named(_LAST_NAMES)
    return [[c] for c in named(_FULL_NAMES)] + ([parts] if parts else []) + [[c] for c in named(_ORG_NAMES)]


def _address_columns(columns: Sequence[str]) -> list[str]:
    found: list[str] = []
    for c in columns:
        tokens = set(_name_tokens(c))
        if tokens & _ADDRESS_TOKENS and not tokens & _NOT_ADDRESS_TOKENS and _key_kind(c) is None:
            found.append(c)
    return found
