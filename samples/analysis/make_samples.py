"""Generate the bundled analysis sample files (deterministic; every value is invented).

Run ``python samples/analysis/make_samples.py [--out DIR]`` to rewrite them next to this script. The same
seed gives byte-identical files, so the committed outputs can be checked against a fresh run.

What each file plants for the agents to find:

* ``customers.csv`` (300 rows): 280 people, 8 exact duplicate rows and 12 near-duplicates (the same person
  re-entered under a new id with other formatting); names in mixed case, with extra spaces and typos;
  emails in mixed case, some invalid; phones in six formats; signup dates in six formats; spend amounts with
  currency signs and thousands separators plus one outlier (``$1,250,000.00``); country spelling variants;
  null-likes (``''``, ``N/A``, ``-``, ``null``).
* ``customers_crm.csv`` (200 rows): 150 of the same people as exported by a CRM (split names, nicknames,
  a few surname typos, lower-case or work emails, E.164 phones, ISO country codes) and 50 people found only
  there: for entity matching.
* ``orders_2024.csv`` / ``orders_2025.csv`` (500 rows each, same schema): in 2025 prices are ~18% higher and
  more spread, quantities and discounts larger, a new ``app`` channel appears and the category mix moves
  towards electronics: for drift detection.
* ``sales_eu.csv`` (120 rows): latin-1, ``;``-delimited, decimal commas and ``.`` thousands separators,
  ``dd.mm.yyyy`` dates, accented names.
* ``events.jsonl`` (250 records): web events; ``value`` only on purchases, ``props`` a nested object whose
  keys depend on the event, ``user_id`` null for anonymous visitors.
* ``inventory.xlsx`` (first sheet 120 rows, second sheet ignored by ingest): typed cells (numbers, dates,
  booleans) and a ``quantity`` column mixing numbers with ``N/A``.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import xlsxwriter  # type: ignore[import-untyped]

SEED = 20240611
HERE = Path(__file__).resolve().parent

FIRST_NAMES = [
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "William",
    "Elizabeth",
    "David",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Charles",
    "Karen",
    "Daniel",
    "Nancy",
    "Matthew",
    "Lisa",
    "Anthony",
    "Betty",
    "Mark",
    "Margaret",
    "Steven",
    "Sandra",
    "Carlos",
    "Ana",
    "Luis",
    "Sofia",
    "Wei",
    "Mei",
    "Aisha",
    "Omar",
    "Priya",
    "Raj",
    "Olga",
    "Ivan",
]
LAST_NAMES = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Chen",
    "Patel",
    "Kim",
    "Novak",
    "Khan",
    "Ivanova",
]
NICKNAMES = {
    "William": "Bill",
    "Robert": "Bob",
    "Elizabeth": "Liz",
    "Richard": "Rick",
    "Joseph": "Joe",
    "Thomas": "Tom",
    "Michael": "Mike",
    "Matthew": "Matt",
    "Daniel": "Dan",
    "Anthony": "Tony",
    "Margaret": "Maggie",
    "Jennifer": "Jen",
    "Patricia": "Pat",
    "Charles": "Chuck",
    "Steven": "Steve",
}
DOMAINS = ["gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "icloud.com", "example.com"]
COUNTRIES: dict[str, tuple[str, list[str]]] = {
    "US": ("United States", ["USA", "United States", "U.S.", "us", "United States of America", "U.S.A."]),
    "CA": ("Canada", ["Canada", "CA", "canada", "CANADA"]),
    "GB": ("United Kingdom", ["United Kingdom", "UK", "U.K.", "Great Britain", "england"]),
    "DE": ("Germany", ["Germany", "DE", "Deutschland", "germany "]),
    "FR": ("France", ["France", "FR", "france"]),
    "MX": ("Mexico", ["Mexico", "México", "MX"]),
}
COUNTRY_WEIGHTS = {"US": 50, "CA": 12, "GB": 12, "DE": 10, "FR": 8, "MX": 8}
CITIES = {
    "US": ["New York", "Chicago", "Austin", "Seattle", "Denver"],
    "CA": ["Toronto", "Vancouver", "Montreal"],
    "GB": ["London", "Manchester", "Leeds"],
    "DE": ["Berlin", "Munich", "Hamburg"],
    "FR": ["Paris", "Lyon", "Marseille"],
    "MX": ["Mexico City", "Monterrey", "Guadalajara"],
}
NULL_LIKES = ["", "N/A", "-", "null"]
SEGMENTS = ["Retail", "retail", "RETAIL", "SMB", "smb", "Small Business", "Enterprise", "ENT", "enterprise"]


@dataclass(frozen=True)
class Person:
    """One invented customer, in canonical form."""

    first: str
    last: str
    email_user: str
    domain: str
    phone: str  # ten digits
    country: str  # ISO code
    signup: date
    spend: float


# ------------------------------------------------------------------------------------------ utilities


def _write_csv(
    path: Path,
    header: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    encoding: str = "utf-8",
    delimiter: str = ",",
) -> None:
    """Write a CSV with ``\\n`` line endings."""
    with path.open("w", encoding=encoding, newline="") as f:
        writer = csv.writer(f, delimiter=delimiter, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _typo(rng: random.Random, word: str) -> str:
    """The word with two neighbouring letters swapped or one letter dropped."""
    if len(word) < 4:
        return word
    i = rng.randrange(1, len(word) - 2)
    if rng.random() < 0.5:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    return word[:i] + word[i + 1 :]


def _people(rng: random.Random, count: int) -> list[Person]:
    """``count`` distinct invented people."""
    seen: set[tuple[str, str]] = set()
    people: list[Person] = []
    while len(people) < count:
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        if (first, last) in seen:
            continue
        seen.add((first, last))
        country = rng.choices(list(COUNTRY_WEIGHTS), weights=list(COUNTRY_WEIGHTS.values()))[0]
        user = rng.choice([f"{first}.{last}", f"{first[0]}{last}", f"{first}{last}{rng.randint(1, 99)}"])
        phone = f"{rng.randint(201, 989)}{rng.randint(200, 999)}{rng.randint(0, 9999):04d}"
        signup = date(2021, 1, 1) + timedelta(days=rng.randrange(1400))
        spend = round(rng.lognormvariate(6.0, 0.8), 2)
        people.append(Person(first, last, user.lower(), rng.choice(DOMAINS), phone, country, signup, spend))
    return people


# ---------------------------------------------------------------------------------------- customers


def _messy_name(rng: random.Random, p: Person) -> str:
    """A full name with case, spacing or spelling noise."""
    name = f"{p.first} {p.last}"
    roll = rng.random()
    if roll < 0.12:
        return name.upper()
    if roll < 0.22:
        return name.lower()
    if roll < 0.32:
        return f"  {p.first}   {p.last} "
    if roll < 0.38:
        return f"{p.first} {_typo(rng, p.last)}"
    if roll < 0.44:
        return f"{p.last}, {p.first}"
    return name


def _messy_email(rng: random.Random, p: Person) -> str:
    """An email that is sometimes mixed case, invalid or missing."""
    email = f"{p.email_user}@{p.domain}"
    roll = rng.random()
    if roll < 0.10:
        return f"{p.email_user.title()}@{p.domain.capitalize()}"
    if roll < 0.13:
        return email.replace("@", "")
    if roll < 0.15:
        return email.replace("@", "@@")
    if roll < 0.17:
        return f"{p.email_user}@"
    if roll < 0.19:
        return email.replace(".", " ", 1)
    if roll < 0.23:
        return rng.choice(NULL_LIKES)
    return email


def _messy_phone(rng: random.Random, p: Person) -> str:
    """A phone number in one of six formats, or a null-like."""
    a, b, c = p.phone[:3], p.phone[3:6], p.phone[6:]
    formats = [f"({a}) {b}-{c}", f"{a}-{b}-{c}", f"{a}.{b}.{c}", f"+1 {a} {b} {c}", p.phone]
    formats.append(f"+1-{a}-{b}-{c}")
    return rng.choice(NULL_LIKES) if rng.random() < 0.06 else rng.choice(formats)


def _messy_date(rng: random.Random, d: date) -> str:
    """A date in one of six formats."""
    formats = ["%Y-%m-%d", "%m/%d/%Y", "%d.%m.%Y", "%b %d, %Y", "%Y/%m/%d", "%d %B %Y"]
    return rng.choice(NULL_LIKES[:2]) if rng.random() < 0.03 else d.strftime(rng.choice(formats))


def _messy_amount(rng: random.Random, amount: float) -> str:
    """An amount with a currency sign, thousands separators or padding, or a null-like."""
    roll = rng.random()
    if roll < 0.05:
        return rng.choice(NULL_LIKES)
    if roll < 0.30:
        return f"${amount:,.2f}"
    if roll < 0.45:
        return f"{amount:,.2f}"
    if roll < 0.55:
        return f"USD {amount:.2f}"
    if roll < 0.62:
        return f" {amount:.1f} "
    return f"{amount:.2f}"


def _customer_row(rng: random.Random, cid: str, p: Person) -> list[str]:
    """One customers.csv row for a person."""
    variants = COUNTRIES[p.country][1]
    country = rng.choice(NULL_LIKES) if rng.random() < 0.04 else rng.choice(variants)
    segment = rng.choice(NULL_LIKES) if rng.random() < 0.05 else rng.choice(SEGMENTS)
    return [
        cid,
        _messy_name(rng, p),
        _messy_email(rng, p),
        _messy_phone(rng, p),
        _messy_date(rng, p.signup),
        country,
        _messy_amount(rng, p.spend),
        segment,
    ]


CUSTOMER_HEADER = [
    "customer_id",
    "full_name",
    "email",
    "phone",
    "signup_date",
    "country",
    "total_spend",
    "segment",
]


def make_customers(rng: random.Random, people: Sequence[Person], out: Path) -> None:
    """customers.csv: 280 people, 8 exact and 12 near duplicates, one outlier amount (300 rows)."""
    rows = [_customer_row(rng, f"C{i + 1:04d}", p) for i, p in enumerate(people[:280])]
    rows[137][6] = "$1,250,000.00"
    for k, src in enumerate(rng.sample(range(280), 12)):
        near = _customer_row(rng, f"C{281 + k:04d}", people[src])
        rows.insert(rng.randrange(src + 1, len(rows) + 1), near)
    for copy in [list(rows[i]) for i in rng.sample(range(len(rows)), 8)]:
        rows.insert(rng.randrange(len(rows) + 1), copy)
    _write_csv(out / "customers.csv", CUSTOMER_HEADER, rows)


# --------------------------------------------------------------------------------------- CRM export


def _crm_row(rng: random.Random, crm_id: int, p: Person) -> list[str]:
    """One customers_crm.csv row: the same person as a CRM would hold them."""
    first = NICKNAMES.get(p.first, p.first) if rng.random() < 0.25 else p.first
    last = _typo(rng, p.last) if rng.random() < 0.06 else p.last
    roll = rng.random()
    if roll < 0.15:
        email = f"{p.first[0].lower()}{p.last.lower()}@acme-corp.com"
    elif roll < 0.25:
        email = ""
    else:
        email = f"{p.email_user}@{p.domain}"
    phone = "" if rng.random() < 0.08 else f"+1{p.phone}"
    created = datetime.combine(p.signup, datetime.min.time()) + timedelta(
        days=rng.randint(-3, 30), minutes=rng.randrange(1440)
    )
    city = rng.choice(CITIES[p.country])
    created_at = created.isoformat(timespec="seconds")
    return [f"CRM-{crm_id}", first, last, email, phone, city, p.country, created_at]


CRM_HEADER = [
    "crm_id",
    "first_name",
    "last_name",
    "email_address",
    "phone_number",
    "city",
    "country_code",
    "created_at",
]


def make_crm(rng: random.Random, people: Sequence[Person], out: Path) -> None:
    """customers_crm.csv: 150 people shared with customers.csv plus 50 CRM-only people (200 rows)."""
    chosen = [people[i] for i in sorted(rng.sample(range(280), 150))] + list(people[280:330])
    rng.shuffle(chosen)
    rows = [_crm_row(rng, 10001 + i, p) for i, p in enumerate(chosen)]
    _write_csv(out / "customers_crm.csv", CRM_HEADER, rows)


# ------------------------------------------------------------------------------------------- orders

PRODUCTS: list[tuple[str, str, float]] = [
    ("Laptop Pro 14", "electronics", 1299.0),
    ("Wireless Mouse", "electronics", 24.99),
    ("USB-C Hub", "electronics", 49.5),
    ("Noise Cancelling Headphones", "electronics", 249.0),
    ("Office Chair", "furniture", 189.0),
    ("Standing Desk", "furniture", 459.0),
    ("Desk Lamp", "furniture", 39.9),
    ("Notebook A5 (3-pack)", "stationery", 12.5),
    ("Gel Pens (10)", "stationery", 8.75),
    ("Coffee Beans 1kg", "grocery", 22.0),
    ("Green Tea (50 bags)", "grocery", 6.4),
    ("Water Bottle", "outdoor", 18.0),
]
ORDER_HEADER = [
    "order_id",
    "customer_id",
    "order_date",
    "product",
    "category",
    "quantity",
    "unit_price",
    "discount_pct",
    "total",
    "channel",
]


@dataclass(frozen=True)
class _Regime:
    """How one year's orders are distributed."""

    year: int
    price_factor: float
    price_spread: float
    quantity_mean: float
    max_discount: int
    channels: dict[str, int]
    electronics_weight: int


def _order_row(rng: random.Random, regime: _Regime) -> list[object]:
    """One order under a regime (without its id)."""
    weights = [regime.electronics_weight if c == "electronics" else 10 for _, c, _ in PRODUCTS]
    product, category, base = rng.choices(PRODUCTS, weights=weights)[0]
    price = round(base * regime.price_factor * rng.gauss(1.0, regime.price_spread), 2)
    quantity = max(1, round(rng.expovariate(1 / regime.quantity_mean)))
    discount = rng.choice([d for d in (0, 0, 0, 5, 10, 15, 20, 25) if d <= regime.max_discount])
    total = round(price * quantity * (1 - discount / 100), 2)
    day = date(regime.year, 1, 1) + timedelta(days=rng.randrange(365))
    channel = rng.choices(list(regime.channels), weights=list(regime.channels.values()))[0]
    customer = f"C{rng.randint(1, 292):04d}"
    money = [f"{price:.2f}", discount, f"{total:.2f}"]
    return [customer, day.isoformat(), product, category, quantity, *money, channel]


def make_orders(rng: random.Random, out: Path) -> None:
    """orders_2024.csv and orders_2025.csv (500 rows each; 2025 drifts in price, quantity, mix)."""
    regimes = [
        _Regime(2024, 1.0, 0.04, 2.0, 10, {"web": 50, "store": 35, "phone": 15}, 10),
        _Regime(2025, 1.18, 0.10, 3.2, 25, {"web": 60, "store": 20, "phone": 5, "app": 15}, 22),
    ]
    for regime in regimes:
        rows = sorted((_order_row(rng, regime) for _ in range(500)), key=lambda r: str(r[1]))
        rows = [[f"O-{regime.year}-{n:05d}", *row] for n, row in enumerate(rows, start=1)]
        _write_csv(out / f"orders_{regime.year}.csv", ORDER_HEADER, rows)


# ------------------------------------------------------------------------------------------ EU sales

EU_NAMES = [
    "José García",
    "Zoë Müller",
    "François Lefèvre",
    "Åsa Ström",
    "Jürgen Groß",
    "Inés Peña",
    "Søren Østergård",
    "Chloé Dubois",
    "Björn Ågren",
    "Mónica Núñez",
    "Renée Fontaine",
    "Jörg Schäfer",
    "Íñigo Martínez",
    "Łucja Nowak",
    "Ana Conceição",
    "Hélène Girard",
    "Kåre Dæhlie",
    "Ángel Cortés",
]
EU_CITIES = [
    ("Köln", "Deutschland"),
    ("München", "Deutschland"),
    ("Málaga", "España"),
    ("Córdoba", "España"),
    ("Besançon", "France"),
    ("Orléans", "France"),
    ("Göteborg", "Sverige"),
    ("Århus", "Danmark"),
    ("Genève", "Suisse"),
    ("Zürich", "Schweiz"),
]


def _eu_number(value: float) -> str:
    """A number written the continental way: ``1.234,56``."""
    return f"{value:,.2f}".replace(",", " ").replace(".", ",").replace(" ", ".")


def make_sales_eu(rng: random.Random, out: Path) -> None:
    """sales_eu.csv: latin-1, ``;``-delimited, decimal commas, ``dd.mm.yyyy`` dates (120 rows)."""
    rows: list[list[object]] = []
    for n in range(120):
        name = rng.choice([nm for nm in EU_NAMES if nm != "Łucja Nowak"])  # Ł is not latin-1
        city, country = rng.choice(EU_CITIES)
        day = date(2024, 1, 1) + timedelta(days=rng.randrange(366))
        amount = round(rng.lognormvariate(5.5, 1.0), 2)
        quantity = rng.randint(1, 12)
        rows.append([n + 1, name, city, country, day.strftime("%d.%m.%Y"), _eu_number(amount), quantity])
    header = ["id", "kunde", "stadt", "land", "datum", "betrag_eur", "menge"]
    _write_csv(out / "sales_eu.csv", header, rows, encoding="latin-1", delimiter=";")


# --------------------------------------------------------------------------------------------- events

EVENTS = ["page_view", "page_view", "page_view", "search", "add_to_cart", "purchase", "signup"]
PAGES = ["/", "/products", "/products/laptop-pro-14", "/cart", "/checkout", "/blog/how-to-choose-a-desk"]


def _event(rng: random.Random, n: int, start: datetime) -> dict[str, object]:
    """One web event; keys vary with the event type."""
    kind = rng.choice(EVENTS)
    event: dict[str, object] = {
        "event_id": n,
        "ts": (start + timedelta(seconds=n * 37 + rng.randrange(30))).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "user_id": None if rng.random() < 0.3 else f"C{rng.randint(1, 292):04d}",
        "session_id": f"s-{rng.randrange(16**8):08x}",
        "event": kind,
        "page": rng.choice(PAGES),
        "device": rng.choice(["desktop", "mobile", "mobile", "tablet"]),
    }
    if kind == "search":
        query = rng.choice(["desk", "usb c hub", "headphones", "chair"])
        event["props"] = {"query": query, "results": rng.randint(0, 40)}
    elif kind == "add_to_cart":
        event["props"] = {"sku": f"SKU-{rng.randint(100, 999)}", "qty": rng.randint(1, 3)}
    elif kind == "purchase":
        event["value"] = round(rng.uniform(10, 1500), 2)
        event["props"] = {"items": rng.randint(1, 5), "coupon": rng.choice([None, "SPRING10", "WELCOME"])}
    return event


def make_events(rng: random.Random, out: Path) -> None:
    """events.jsonl: 250 web events, one JSON object per line."""
    start = datetime(2025, 3, 1, 8, 0, 0)
    lines = [json.dumps(_event(rng, n + 1, start), ensure_ascii=False) for n in range(250)]
    (out / "events.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------------------ inventory

INVENTORY_HEADER = [
    "sku",
    "product",
    "category",
    "warehouse",
    "quantity",
    "unit_cost",
    "last_restocked",
    "discontinued",
]


def make_inventory(rng: random.Random, out: Path) -> None:
    """inventory.xlsx: 120 typed rows on the first sheet (``quantity`` mixes numbers and ``N/A``)."""
    workbook = xlsxwriter.Workbook(str(out / "inventory.xlsx"))
    workbook.set_properties({"created": datetime(2025, 1, 1), "title": "Inventory (sample)"})
    date_format = workbook.add_format({"num_format": "yyyy-mm-dd"})
    sheet = workbook.add_worksheet("Inventory")
    sheet.write_row(0, 0, INVENTORY_HEADER)
    for r in range(1, 121):
        product, category, base = rng.choice(PRODUCTS)
        quantity: object = "N/A" if rng.random() < 0.05 else rng.randint(0, 500)
        sheet.write_string(r, 0, f"SKU-{1000 + r}")
        sheet.write_row(r, 1, [product, category, rng.choice(["North", "South", "East", "West"])])
        sheet.write(r, 4, quantity)
        sheet.write_number(r, 5, round(base * rng.uniform(0.45, 0.7), 2))
        sheet.write_datetime(r, 6, datetime(2024, 1, 1) + timedelta(days=rng.randrange(400)), date_format)
        sheet.write_boolean(r, 7, rng.random() < 0.1)
    suppliers = workbook.add_worksheet("Suppliers")
    suppliers.write_row(0, 0, ["supplier", "country"])
    suppliers.write_row(1, 0, ["Acme Parts", "US"])
    workbook.close()


# ------------------------------------------------------------------------------------------------ main


def make_all(out: Path = HERE, seed: int = SEED) -> None:
    """Write every sample file into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    people = _people(random.Random(seed), 330)
    make_customers(random.Random(seed + 1), people, out)
    make_crm(random.Random(seed + 2), people, out)
    make_orders(random.Random(seed + 3), out)
    make_sales_eu(random.Random(seed + 4), out)
    make_events(random.Random(seed + 5), out)
    make_inventory(random.Random(seed + 6), out)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description="Generate the bundled analysis sample files.")
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: next to this script)")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    make_all(args.out, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
