"""The shop's catalog (products, sizes, prices in UAH, stock) and the lookups the assistants make in it.

The local assistant reads ``samples/chat/catalog.json`` (:data:`DEFAULT_CATALOG_PATH`). Customers name a product by
its SKU or by one of its aliases, in English or Ukrainian and in any case; Ukrainian is inflected ("сукня",
"сукню", "сукні"), so every form customers type is listed as an alias, and no alias may name two products.
Typographic apostrophes (``’``, ``ʼ``) count as ``'`` so "в’язана" and "в'язана" are one word.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from conveyor.errors import BadInput, NotFound

#: The catalog the local assistant answers from when no other path is given.
DEFAULT_CATALOG_PATH = Path(__file__).resolve().parents[2] / "samples" / "chat" / "catalog.json"

Language = Literal["en", "uk"]

_APOSTROPHES = str.maketrans({"’": "'", "ʼ": "'", "`": "'", "‘": "'"})
#: A word: letters and digits, with inner apostrophes or hyphens ("t-shirt", "п'ять").
_WORD = re.compile(r"[^\W_]+(?:['\-][^\W_]+)*")


def plain_apostrophes(text: str) -> str:
    """``text`` with typographic apostrophes (``’``, ``ʼ``, ``‘``, `````) made ``'``."""
    return text.translate(_APOSTROPHES)


def normalize(text: str) -> str:
    """``text`` lower-cased with typographic apostrophes made plain, the form every lookup compares."""
    return plain_apostrophes(text).lower()


def words(text: str) -> list[str]:
    """The normalised words of ``text``, in order (punctuation and emoji dropped)."""
    return [word.lower() for word in cased_words(text)]


def cased_words(text: str) -> list[str]:
    """The words of ``text`` as typed (apostrophes made plain), in order (punctuation and emoji dropped)."""
    return _WORD.findall(plain_apostrophes(text))


class Product(BaseModel):
    """One product: its SKU, names in both languages, the words customers use for it, price and stock per size."""

    model_config = ConfigDict(frozen=True)

    sku: str = Field(min_length=1, max_length=64, pattern=r"^[A-Z0-9][A-Z0-9-]*$")
    name_en: str = Field(min_length=1)
    name_uk: str = Field(min_length=1)
    aliases: tuple[str, ...] = ()
    price: int = Field(gt=0, description="Price of one item in UAH.")
    sizes: dict[str, int] = Field(min_length=1, description="Stock per size, in the order sizes are offered.")

    @field_validator("sizes")
    @classmethod
    def _stock_not_negative(cls, sizes: dict[str, int]) -> dict[str, int]:
        """Stock is a count: never negative, and size names are unique whatever their case."""
        if any(count < 0 for count in sizes.values()):
            raise ValueError("stock cannot be negative")
        if len({size.upper() for size in sizes}) != len(sizes):
            raise ValueError("two sizes differ only in case")
        return sizes

    def name(self, language: Language) -> str:
        """The product's name in ``language``."""
        return self.name_uk if language == "uk" else self.name_en

    def size(self, raw: str) -> str | None:
        """The catalog's spelling of size ``raw`` (any case), or None when the product has no such size."""
        wanted = raw.strip().upper()
        return next((size for size in self.sizes if size.upper() == wanted), None)

    def stock(self, size: str) -> int:
        """How many are in stock in ``size`` (any case); 0 for a size the product does not come in."""
        known = self.size(size)
        return self.sizes[known] if known is not None else 0

    def sizes_in_stock(self) -> list[str]:
        """The sizes with at least one item left, in catalog order."""
        return [size for size, count in self.sizes.items() if count > 0]


class Catalog(BaseModel):
    """Every product the shop sells, looked up by SKU or alias in either language."""

    model_config = ConfigDict(frozen=True)

    currency: str = "UAH"
    products: tuple[Product, ...] = Field(min_length=1)

    _by_key: dict[str, Product] = PrivateAttr(default_factory=dict)
    _longest_alias: int = PrivateAttr(default=1)

    @model_validator(mode="after")
    def _names_unique(self) -> Catalog:
        """SKUs are unique and no word (SKU or alias) names two products, so every lookup has one answer."""
        index: dict[str, Product] = {}
        for product in self.products:
            for key in (product.sku, *product.aliases):
                norm = " ".join(words(key))
                if not norm:
                    raise ValueError(f"{product.sku}: alias {key!r} has no letters or digits")
                other = index.setdefault(norm, product)
                if other is not product:
                    raise ValueError(f"{key!r} names both {other.sku} and {product.sku}")
        self._by_key = index
        self._longest_alias = max(len(key.split()) for key in index)
        return self

    def get(self, sku: str) -> Product:
        """The product with SKU ``sku`` (any case); :class:`NotFound` ``PRODUCT_NOT_FOUND`` when there is none."""
        product = self.by_sku(sku)
        if product is None:
            raise NotFound(f"no product with SKU {sku!r}", code="PRODUCT_NOT_FOUND", details={"sku": sku})
        return product

    def by_sku(self, sku: str) -> Product | None:
        """The product with SKU ``sku`` (any case), or None."""
        wanted = sku.strip().upper()
        return next((product for product in self.products if product.sku == wanted), None)

    def find(self, name: str) -> Product | None:
        """The product ``name`` names (its SKU or an alias, any case, either language), or None."""
        return self._by_key.get(" ".join(words(name)))

    def mentioned_in(self, text: str) -> list[Product]:
        """The products ``text`` names, each once, in the order they are first named."""
        return [product for product, _, _ in self.mentions(words(text))]

    def mentions(self, tokens: list[str]) -> list[tuple[Product, int, int]]:
        """Each product named in ``tokens`` (normalised words) once, with the word span ``[start, end)`` naming it.

        The longest alias wins where two overlap; a product named twice is reported at its first mention.
        """
        found: list[tuple[Product, int, int]] = []
        seen: set[str] = set()
        i = 0
        while i < len(tokens):
            for length in range(min(self._longest_alias, len(tokens) - i), 0, -1):
                product = self._by_key.get(" ".join(tokens[i : i + length]))
                if product is not None:
                    if product.sku not in seen:
                        seen.add(product.sku)
                        found.append((product, i, i + length))
                    i += length
                    break
            else:
                i += 1
        return found

    def stock(self, sku: str, size: str) -> int:
        """How many of ``sku`` are in stock in ``size``; 0 for an unknown SKU or size."""
        product = self.by_sku(sku)
        return product.stock(size) if product is not None else 0

    def in_stock(self, sku: str, size: str, quantity: int = 1) -> bool:
        """Whether ``quantity`` of ``sku`` in ``size`` can be sold now (False for an unknown SKU or size)."""
        return quantity >= 1 and self.stock(sku, size) >= quantity


def catalog_from_json(data: str | bytes | Mapping[str, object]) -> Catalog:
    """A catalog from its JSON (text or parsed); :class:`BadInput` ``CATALOG_INVALID`` saying what is wrong."""
    try:
        if isinstance(data, str | bytes):
            return Catalog.model_validate_json(data)
        return Catalog.model_validate(data)
    except ValidationError as exc:
        raise BadInput(f"invalid catalog: {exc}", code="CATALOG_INVALID") from exc


def load_catalog(path: Path | str = DEFAULT_CATALOG_PATH) -> Catalog:
    """The catalog stored at ``path`` (JSON); :class:`BadInput` ``CATALOG_INVALID`` when it is not a valid one."""
    return catalog_from_json(Path(path).read_bytes())
