"""The deterministic local shop assistant: answers from the catalog and collects an order across messages.

Used when no model endpoint is configured. Pure: no I/O, no clock, no randomness, so one conversation's messages
always get the same replies. :func:`reply` takes the conversation's state and one customer message and returns the
new state, the reply text and, exactly when the customer confirmed a complete order, the :class:`OrderDraft` (the
shape the model path's ``create_order`` tool produces too).

It understands English and Ukrainian (a message with Cyrillic letters is Ukrainian) and answers in the customer's
language: greetings; prices ("how much is the hoodie?", "скільки коштує худі?"); sizes and stock ("what sizes…",
"які розміри…", "do you have the dress in 110?"); the catalog; orders ("I want 2 hoodies size M", "хочу 2 худі
розмір M"), refusing a size or quantity that is not in stock and naming what is. With something in the cart it asks
for the missing name, phone and delivery city one at a time, then shows a summary with the total and asks to
confirm.

The conversation moves through :class:`Stage`: ``browsing`` → ``collecting`` (cart filled, details missing) →
``confirming`` → ``ordered``. "Yes"/"так" while confirming places the order (the cart is emptied, the customer's
details are kept for the next order). "No"/"ні" while confirming goes back to ``browsing`` and **keeps** the cart
(the customer may want to add something; "checkout"/"оформити" resumes). "Cancel"/"скасувати" at any stage goes
back to ``browsing`` and **empties** the cart. Anything it does not understand gets a reply naming what it can do.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from activities.chat.catalog import Catalog, Language, Product, cased_words, normalize, plain_apostrophes

Stage = Literal["browsing", "collecting", "confirming", "ordered"]

#: The most of one product and size a single order line may hold.
MAX_QUANTITY = 20
#: How a stored phone number looks: Ukrainian, international form.
PHONE_PATTERN = r"^\+380\d{9}$"
_NAME_MAX = 60


class CartItem(BaseModel):
    """One line of the cart: a product in one size, and how many."""

    model_config = ConfigDict(frozen=True)

    sku: str
    size: str
    quantity: int = Field(ge=1, le=MAX_QUANTITY)


class PendingItem(BaseModel):
    """A product the customer asked for whose size is still to be named."""

    model_config = ConfigDict(frozen=True)

    sku: str
    quantity: int = Field(ge=1, le=MAX_QUANTITY)


class ConversationState(BaseModel):
    """What the assistant remembers of one conversation between messages."""

    model_config = ConfigDict(frozen=True)

    language: Language = "uk"
    """The customer's language, from their latest message; Ukrainian (the shop's) until they write."""
    stage: Stage = "browsing"
    cart: tuple[CartItem, ...] = ()
    pending: PendingItem | None = None
    customer_name: str | None = Field(default=None, min_length=1, max_length=_NAME_MAX)
    phone: str | None = Field(default=None, pattern=PHONE_PATTERN)
    city: str | None = Field(default=None, min_length=1, max_length=_NAME_MAX)
    orders_placed: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _stage_consistent(self) -> ConversationState:
        """Collecting and confirming need a cart; confirming also every detail; an order just placed empties it."""
        if self.stage in ("collecting", "confirming") and not self.cart:
            raise ValueError(f"stage {self.stage} needs a non-empty cart")
        if self.stage == "confirming" and self.missing_detail() is not None:
            raise ValueError("stage confirming needs name, phone and city")
        if self.stage == "ordered" and self.cart:
            raise ValueError("stage ordered has an empty cart")
        return self

    def missing_detail(self) -> Literal["name", "phone", "city"] | None:
        """The first customer detail the order still needs, in the order they are asked for, or None."""
        if self.customer_name is None:
            return "name"
        if self.phone is None:
            return "phone"
        if self.city is None:
            return "city"
        return None


class OrderItem(BaseModel):
    """One line of a placed order, with the unit price (UAH) it was sold at."""

    model_config = ConfigDict(frozen=True)

    sku: str
    size: str
    quantity: int = Field(ge=1)
    price: int = Field(gt=0, description="Price of one item in UAH.")


class OrderDraft(BaseModel):
    """An order the customer confirmed: what, to whom, where, and the total in UAH."""

    model_config = ConfigDict(frozen=True)

    number: int = Field(ge=1, description="The conversation's n-th order (for the CRM idempotency key).")
    items: tuple[OrderItem, ...] = Field(min_length=1)
    customer_name: str
    phone: str = Field(pattern=PHONE_PATTERN)
    city: str
    total: int = Field(gt=0, description="Sum of price × quantity over the items, in UAH.")

    @model_validator(mode="after")
    def _total_adds_up(self) -> OrderDraft:
        """The total is exactly the sum of the lines."""
        if self.total != sum(item.price * item.quantity for item in self.items):
            raise ValueError("total is not the sum of the items")
        return self


class AssistantTurn(BaseModel):
    """The assistant's answer to one message: the new state, the reply, and the order if one was confirmed."""

    model_config = ConfigDict(frozen=True)

    state: ConversationState
    text: str
    order: OrderDraft | None = None


# --- words the assistant recognises (normalised: lower case, plain apostrophes) -------------------------------

_GREETING = {"hi", "hello", "hey", "hiya", "привіт", "привітик", "вітаю", "здрастуйте", "здравствуйте", "добридень"}
_GREETING_PHRASES = ("good morning", "good afternoon", "good evening", "добрий день", "доброго дня", "добрий вечір")
_CANCEL = {"cancel", "скасувати", "скасуй", "скасуйте", "скасовую", "відмінити", "відміни", "відмініть", "відміна"}
_YES = {"yes", "yeah", "yep", "yup", "sure", "confirm", "ok", "okay", "так", "підтверджую", "згоден", "згодна", "ок"}
_YES_PHRASES = ("go ahead", "все вірно", "все правильно")
_NO = {"no", "nope", "nah", "ні", "нi"}
_NO_PHRASES = ("не треба", "не потрібно", "не хочу", "not yet", "don't", "do not")
_PRICE = {"price", "prices", "cost", "costs", "ціна", "ціни", "ціну", "вартість", "коштує", "коштують", "почім"}
_PRICE_PHRASES = ("how much",)
_SIZES = {"sizes", "size", "розмір", "розміри", "розміру", "розмірів", "розмірі", "розмірах"}
_STOCK = {"stock", "available", "availability", "left", "have", "наявність", "наявності", "є", "залишилось"}
_STOCK |= {"залишилося", "лишилось", "лишилося"}
_CATALOG = {"catalog", "catalogue", "products", "assortment", "range", "каталог", "асортимент", "товари"}
_CATALOG_PHRASES = ("what do you sell", "what do you have", "що у вас є", "що є")
_ORDER = {"want", "buy", "order", "take", "add", "like", "need", "хочу", "хочемо", "хотіла", "хотів", "купити"}
_ORDER |= {"куплю", "замовити", "замовлю", "замовляю", "замовлення", "візьму", "візьмемо", "беру", "додай"}
_ORDER |= {"додайте", "додати", "потрібна", "потрібен", "потрібні", "потрібно", "checkout", "оформити", "оформлюємо"}
_ORDER_PHRASES = ("check out", "place the order", "place an order", "place my order")
#: Words after which the next word is a size ("size M", "розмір 110", "р. 104").
_SIZE_MARKERS = {"size", "розмір", "розміру", "розмірі", "розміром", "р", "р-р", "рр"}
_LETTER_SIZES = {"XXS", "XS", "S", "M", "L", "XL", "XXL", "XXXL", "2XL", "3XL"}
#: Cyrillic look-alikes of letter sizes, as Ukrainian keyboards type them (taken as sizes only in capitals or after
#: "розмір", since "м" is also short for "місто").
_CYRILLIC_SIZES = {"м": "M", "л": "L", "с": "S", "хс": "XS", "хл": "XL", "ххл": "XXL"}
_NUMBER_WORDS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "один": 1,
    "одна": 1,
    "одну": 1,
    "два": 2,
    "дві": 2,
    "три": 3,
    "чотири": 4,
    "п'ять": 5,
    "шість": 6,
    "сім": 7,
    "вісім": 8,
    "дев'ять": 9,
    "десять": 10,
}
_NAME_PREFIXES = ("my name is", "name is", "i am", "i'm", "it's", "this is", "name", "мене звати", "моє ім'я", "я")
_CITY_PREFIXES = ("deliver to", "delivery to", "city", "to", "in", "доставка в", "доставка у", "місто", "м", "в", "у")
_PROPER_NAME = re.compile(r"^[^\W\d_]+(?:(?:['\-]| )[^\W\d_]+)*$")
_PHONE_RUN = re.compile(r"\+?\d[\d\s().\-]{5,}\d")
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
_LATIN_WORD = re.compile(r"[a-z]{2,}")
_SPACES = re.compile(r"\s+")

# --- reply texts: (English, Ukrainian) -------------------------------------------------------------------------

_TEXT: dict[str, tuple[str, str]] = {
    "greeting": (
        "Hello! I can tell you prices, sizes and what is in stock, and take your order right here. "
        "What are you looking for?",
        "Вітаю! Підкажу ціни, розміри й наявність і оформлю замовлення просто тут. Що вас цікавить?",
    ),
    "hello_prefix": ("Hello! ", "Вітаю! "),
    "fallback": (
        'Sorry, I did not understand that. I can tell you prices, sizes and stock, and take an order, e.g. "How '
        'much is the hoodie?", "What sizes does the dress come in?", "I want 2 hoodies size M". We sell: {products}.',
        "Вибачте, я не зрозумів. Я підкажу ціни, розміри й наявність і прийму замовлення, наприклад: «Скільки "
        "коштує худі?», «Які розміри є на сукню?», «Хочу 2 худі розмір M». У нас є: {products}.",
    ),
    "catalog": ("Here is what we have:\n{lines}", "Ось що у нас є:\n{lines}"),
    "catalog_line": ("• {name} — {price}", "• {name} — {price}"),
    "price": ("{name} costs {price}.", "{name} коштує {price}."),
    "sold_out": ("{name} is sold out at the moment.", "{name} зараз немає в наявності."),
    "sizes": ("{name} — sizes in stock: {sizes}.", "{name} — розміри в наявності: {sizes}."),
    "stock": ("{name} in stock: {counts}.", "{name} в наявності: {counts}."),
    "stock_yes": (
        "Yes, {name} in size {size} is in stock ({count} left).",
        "Так, {name} у розмірі {size} є ({count} шт.).",
    ),
    "size_out": (
        "Sorry, {name} in size {size} is out of stock. Available: {sizes}.",
        "На жаль, {name} у розмірі {size} немає. В наявності: {sizes}.",
    ),
    "size_unknown": (
        "{name} does not come in size {size}. In stock: {sizes}.",
        "{name} не буває в розмірі {size}. В наявності: {sizes}.",
    ),
    "which_size": ("{name}: which size? In stock: {sizes}.", "{name}: який розмір? В наявності: {sizes}."),
    "card": ("{name} costs {price}; sizes in stock: {sizes}.", "{name} коштує {price}; розміри в наявності: {sizes}."),
    "too_many": (
        "Sorry, only {count} of {name} in size {size} can be added.",
        "На жаль, {name} у розмірі {size} можна додати лише {count} шт.",
    ),
    "min_one": ("How many would you like? At least one, please.", "Скільки штук? Щонайменше одну."),
    "over_max": ("At most {max} of one item per order, please.", "Не більше {max} шт. одного товару в замовленні."),
    "one_at_a_time": (
        'Let\'s add one product at a time, e.g. "2 hoodies size M". Which one first?',
        "Давайте додавати по одному товару, наприклад «2 худі розмір M». З чого почнемо?",
    ),
    "which_product": (
        "What would you like to order? We have:\n{lines}",
        "Що бажаєте замовити? У нас є:\n{lines}",
    ),
    "added": ("Added to your cart: {line}.", "Додав у кошик: {line}."),
    "item_line": ("{name}, size {size} × {quantity} — {amount}", "{name}, розмір {size} × {quantity} — {amount}"),
    "checkout": ("Let's place your order.", "Оформлюємо замовлення."),
    "ask_name": ("What name should I put on the order?", "Як вас звати? Напишіть ім'я та прізвище для замовлення."),
    "ask_phone": (
        "What is your phone number? (+380XXXXXXXXX or 0XXXXXXXXX)",
        "Ваш номер телефону? (+380XXXXXXXXX або 0XXXXXXXXX)",
    ),
    "ask_city": ("Which city should we deliver to?", "У яке місто доставити?"),
    "bad_name": (
        'Please send just your name in letters, e.g. "Olena Petrenko".',
        "Напишіть, будь ласка, лише ім'я літерами, наприклад «Олена Петренко».",
    ),
    "bad_phone": (
        "Sorry, that does not look like a Ukrainian phone number.",
        "Вибачте, це не схоже на український номер телефону.",
    ),
    "bad_city": (
        'Please send just the city name, e.g. "Kyiv".',
        "Напишіть, будь ласка, лише назву міста, наприклад «Київ».",
    ),
    "summary": (
        "Your order:\n{lines}\nTotal: {total}\nName: {name}\nPhone: {phone}\nDelivery to: {city}",
        "Ваше замовлення:\n{lines}\nРазом: {total}\nІм'я: {name}\nТелефон: {phone}\nДоставка: {city}",
    ),
    "confirm": ("Shall I place the order? (yes/no)", "Оформлюю замовлення? (так/ні)"),
    "ordered": (
        "Thank you, {name}! Your order #{number} is placed, total {total}. We will call you at {phone} about "
        "delivery to {city}.",
        "Дякуємо, {name}! Замовлення №{number} оформлено, разом {total}. Ми зателефонуємо на {phone} щодо доставки "
        "(місто {city}).",
    ),
    "declined": (
        'OK, I have not placed the order. Your cart is kept: add something, say "checkout" when ready, or "cancel" '
        "to empty it.",
        "Добре, замовлення не оформлюю. Кошик збережено: додайте товар, напишіть «оформити», коли будете готові, "
        "або «скасувати», щоб його очистити.",
    ),
    "cancelled": ("Cancelled: your cart is empty now.", "Скасовано: кошик порожній."),
    "nothing_to_cancel": ("There is nothing to cancel: your cart is empty.", "Скасовувати нічого: кошик порожній."),
}


def _t(language: Language, key: str, **values: object) -> str:
    """Reply text ``key`` in ``language`` with ``values`` filled in."""
    english, ukrainian = _TEXT[key]
    return (ukrainian if language == "uk" else english).format(**values)


def _money(amount: int, language: Language) -> str:
    """``amount`` UAH as the customer reads it: "1,290 UAH" or "1 290 грн"."""
    return f"{amount:,} UAH" if language == "en" else f"{amount:,} грн".replace(",", " ")


# --- reading a message ------------------------------------------------------------------------------------------


class _Message:
    """One customer message, read once: its words, the products and sizes it names, and what it asks for."""

    def __init__(self, text: str, catalog: Catalog) -> None:
        """Reads ``text`` against ``catalog``."""
        self.text = text
        self.cased = cased_words(text)
        self.tokens = [word.lower() for word in self.cased]
        self.joined = f" {' '.join(self.tokens)} "
        self.products = [product for product, _, _ in catalog.mentions(self.tokens)]
        self.greeting = self._any(_GREETING, _GREETING_PHRASES)
        self.cancel = self._any(_CANCEL)
        self.yes = self._any(_YES, _YES_PHRASES)
        self.no = self._any(_NO, _NO_PHRASES)
        self.price = self._any(_PRICE, _PRICE_PHRASES)
        self.sizes = self._any(_SIZES)
        self.stock = self._any(_STOCK, ("in stock", "do you have"))
        self.catalog = self._any(_CATALOG, _CATALOG_PHRASES)
        self.order = self._any(_ORDER, _ORDER_PHRASES)
        self.question = self.price or self.stock or self.sizes or "?" in text

    def _any(self, single: set[str], phrases: tuple[str, ...] = ()) -> bool:
        """Whether the message has one of the ``single`` words or contains one of the ``phrases``."""
        return any(token in single for token in self.tokens) or any(f" {p} " in self.joined for p in phrases)

    def size_for(self, product: Product) -> str | None:
        """The size the message names for ``product``: after "size"/"розмір", a letter size, or one of its sizes.

        Returned as the catalog spells it when the product has it, else as typed (upper-cased) so the reply can
        say the product does not come in it.
        """
        for marker, raw in zip(self.tokens, self.tokens[1:], strict=False):
            if marker in _SIZE_MARKERS and (size := _as_size(raw, product)) is not None:
                return size
        for token, cased in zip(self.tokens, self.cased, strict=True):
            if cased.upper() in _LETTER_SIZES or (cased.isupper() and token in _CYRILLIC_SIZES):
                return _as_size(token, product)
            if token.isdecimal() and product.size(token) is not None:
                return product.size(token)
        return None

    def quantity(self, size: str | None) -> int | None:
        """How many the message asks for: the first number (digits or a word) that is not the size, or None.

        Numbers too long to be a quantity count as more than :data:`MAX_QUANTITY`.
        """
        after_marker = False
        for token in self.tokens:
            if token in _SIZE_MARKERS:
                after_marker = True
                continue
            if after_marker:
                after_marker = False
                continue
            if token.isdecimal() and token != size:
                return int(token) if len(token) <= 6 else MAX_QUANTITY + 1
            if token in _NUMBER_WORDS:
                return _NUMBER_WORDS[token]
        return None


def _as_size(raw: str, product: Product) -> str | None:
    """``raw`` (a normalised word) as a size of ``product``, or upper-cased when it only looks like a size."""
    raw = _CYRILLIC_SIZES.get(raw, raw)
    known = product.size(raw)
    if known is not None:
        return known
    if raw.upper() in _LETTER_SIZES or (raw.isdecimal() and len(raw) <= 3):
        return raw.upper()
    return None


def _detect_language(text: str) -> Language | None:
    """Ukrainian when the text has Cyrillic, English when it has Latin words, else None (keep the language)."""
    if _CYRILLIC.search(text):
        return "uk"
    latin = [word for word in _LATIN_WORD.findall(normalize(text)) if word.upper() not in _LETTER_SIZES]
    return "en" if any(word not in ("ok", "okay") for word in latin) else None


def _phone(text: str) -> str | None:
    """The Ukrainian phone number in ``text`` as +380XXXXXXXXX, or None when it holds no valid one."""
    match = _PHONE_RUN.search(text)
    if match is None:
        return None
    digits = re.sub(r"\D", "", match.group(0))
    international = match.group(0).startswith("+")
    if len(digits) == 12 and digits.startswith("380"):
        return f"+{digits}"
    if len(digits) == 10 and digits.startswith("0") and not international:
        return f"+38{digits}"
    return None


def _free_text(text: str, prefixes: tuple[str, ...]) -> str | None:
    """``text`` as a proper name (a person's or a city's) with a leading phrase like "my name is" removed."""
    value = _SPACES.sub(" ", plain_apostrophes(text)).strip(" \t.,;:!?\"'«»()")
    lowered = value.lower()
    for prefix in prefixes:
        if lowered.startswith(prefix + " ") or lowered.startswith(prefix + ". ") or lowered.startswith(prefix + ":"):
            value = value[len(prefix) :].lstrip(" .:,")
            break
    if not 2 <= len(value) <= _NAME_MAX or len(value.split()) > 4 or not _PROPER_NAME.match(value):
        return None
    if all(normalize(word) in _YES | _NO | _CANCEL | _GREETING for word in value.split()):
        return None
    return value.title() if value == value.lower() else value


# --- replying -----------------------------------------------------------------------------------------------------


class _Outcome:
    """What handling one message produced: the state so far, reply parts, an order, whether text was a value."""

    def __init__(self, state: ConversationState) -> None:
        """Starts from ``state`` with nothing said yet."""
        self.state = state
        self.parts: list[str] = []
        self.order: OrderDraft | None = None
        self.was_value = False


def reply(state: ConversationState, text: str, catalog: Catalog) -> AssistantTurn:
    """The assistant's answer to the customer's ``text`` in conversation ``state``, answering from ``catalog``."""
    before = state
    detected = _detect_language(text)
    outcome = _Outcome(state.model_copy(update={"language": detected or state.language}))
    message = _Message(text[:4096], catalog)
    _handle(outcome, message, catalog)
    new = outcome.state
    if outcome.was_value:
        new = new.model_copy(update={"language": before.language})
    language = new.language
    parts = outcome.parts
    if outcome.order is None:
        if new.stage == "collecting":
            parts.append(_t(language, f"ask_{new.missing_detail()}"))
        elif new.stage == "confirming":
            if before.stage != "confirming" or _details(before) != _details(new):
                parts.append(_summary(new, catalog))
            parts.append(_t(language, "confirm"))
    new = ConversationState.model_validate(new.model_dump())
    return AssistantTurn(state=new, text="\n\n".join(parts), order=outcome.order)


def _details(state: ConversationState) -> tuple[object, ...]:
    """The parts of a state an order summary shows."""
    return (state.cart, state.customer_name, state.phone, state.city)


def _handle(out: _Outcome, msg: _Message, catalog: Catalog) -> None:
    """Works out what ``msg`` asks for, in order of precedence, and answers it into ``out``."""
    state = out.state
    language = state.language
    if msg.cancel:
        key = "cancelled" if state.cart or state.pending else "nothing_to_cancel"
        out.state = state.model_copy(update={"cart": (), "pending": None, "stage": "browsing"})
        out.parts.append(_t(language, key))
        return
    if state.stage == "confirming" and msg.yes != msg.no:
        if msg.yes:
            _place_order(out, catalog)
        else:
            out.state = state.model_copy(update={"stage": "browsing", "pending": None})
            out.parts.append(_t(language, "declined"))
        return
    if state.stage == "collecting" and state.phone is None and _PHONE_RUN.search(msg.text):
        # A phone number is taken whenever one is still needed, even before the name is.
        if state.missing_detail() == "phone" or _phone(msg.text) is not None:
            _take_detail(out, msg, "phone")
            return
    greeting = _t(language, "hello_prefix") if msg.greeting else ""
    answered = _answer(out, msg, catalog)
    if answered:
        if greeting and out.parts:
            out.parts[0] = greeting + out.parts[0]
        return
    if msg.greeting:
        out.parts.append(_t(language, "greeting"))
    elif (missing := state.missing_detail()) is not None and state.stage == "collecting":
        _take_detail(out, msg, missing)
    elif state.stage != "confirming":
        products = ", ".join(product.name(language) for product in catalog.products)
        out.parts.append(_t(language, "fallback", products=products))


def _answer(out: _Outcome, msg: _Message, catalog: Catalog) -> bool:
    """Answers a question or order about products; False when the message is neither."""
    state = out.state
    language = state.language
    if len(msg.products) > 1 and (msg.order or (not msg.question and any(msg.size_for(p) for p in msg.products))):
        out.parts.append(_t(language, "one_at_a_time"))
        return True
    if len(msg.products) > 1:
        for product in msg.products:
            out.parts.append(_about(product, msg, language))
        return True
    pending = catalog.by_sku(state.pending.sku) if state.pending is not None else None
    if msg.products:
        product = msg.products[0]
        if msg.order or (msg.size_for(product) is not None and not msg.question):
            _add_to_cart(out, msg, product, _or(msg.quantity(msg.size_for(product)), 1))
        else:
            out.parts.append(_about(product, msg, language))
        return True
    if pending is not None and state.pending is not None:  # both: the SKU is known and the pending item is set
        size = msg.size_for(pending)
        if size is not None and not msg.question:
            _add_to_cart(out, msg, pending, _or(msg.quantity(size), state.pending.quantity))
            return True
        if msg.question:
            out.parts.append(_about(pending, msg, language))
            return True
    if msg.order:
        if state.cart:
            out.state = _advance(state)
            out.parts.append(_t(language, "checkout"))
        else:
            out.parts.append(_t(language, "which_product", lines=_catalog_lines(catalog, language)))
        return True
    if msg.catalog or msg.price:
        out.parts.append(_t(language, "catalog", lines=_catalog_lines(catalog, language)))
        return True
    return False


def _or(quantity: int | None, default: int) -> int:
    """``quantity`` when the message named one (zero included, so it can be refused), else ``default``."""
    return default if quantity is None else quantity


def _about(product: Product, msg: _Message, language: Language) -> str:
    """What the customer asked about ``product``: its price, its sizes, or its stock in one size or all."""
    name = product.name(language)
    in_stock = product.sizes_in_stock()
    size = msg.size_for(product)
    if size is not None and (msg.stock or msg.sizes or not msg.price):
        return _size_answer(product, size, language)
    if not in_stock:
        return (
            _t(language, "price", name=name, price=_money(product.price, language))
            + " "
            + _t(language, "sold_out", name=name)
        )
    if msg.price and not (msg.sizes or msg.stock):
        return _t(language, "price", name=name, price=_money(product.price, language))
    if msg.stock and not msg.sizes:
        counts = ", ".join(f"{s} — {product.sizes[s]}" for s in in_stock)
        return _t(language, "stock", name=name, counts=counts)
    if msg.sizes:
        return _t(language, "sizes", name=name, sizes=", ".join(in_stock))
    return _t(language, "card", name=name, price=_money(product.price, language), sizes=", ".join(in_stock))


def _size_answer(product: Product, size: str, language: Language) -> str:
    """Whether ``product`` is in stock in ``size``, naming the sizes that are when it is not."""
    name = product.name(language)
    available = ", ".join(product.sizes_in_stock()) or "—"
    if product.size(size) is None:
        return _t(language, "size_unknown", name=name, size=size, sizes=available)
    if product.stock(size) == 0:
        return _t(language, "size_out", name=name, size=size, sizes=available)
    return _t(language, "stock_yes", name=name, size=size, count=product.stock(size))


def _add_to_cart(out: _Outcome, msg: _Message, product: Product, quantity: int) -> None:
    """Adds ``quantity`` of ``product`` in the size the message names, or says why not and what is possible."""
    state = out.state
    language = state.language
    name = product.name(language)
    in_stock = product.sizes_in_stock()
    if not in_stock:
        out.state = state.model_copy(update={"pending": None})
        out.parts.append(_t(language, "sold_out", name=name))
        return
    if quantity < 1:
        out.parts.append(_t(language, "min_one"))
        return
    if quantity > MAX_QUANTITY:
        out.parts.append(_t(language, "over_max", max=MAX_QUANTITY))
        return
    size = msg.size_for(product)
    if size is None or product.size(size) is None or product.stock(size) == 0:
        pending = PendingItem(sku=product.sku, quantity=quantity)
        out.state = state.model_copy(update={"pending": pending})
        if size is None:
            out.parts.append(_t(language, "which_size", name=name, sizes=", ".join(in_stock)))
        else:
            out.parts.append(_size_answer(product, size, language))
        return
    in_cart = sum(item.quantity for item in state.cart if item.sku == product.sku and item.size == size)
    can_add = min(product.stock(size), MAX_QUANTITY) - in_cart
    if quantity > can_add:
        out.parts.append(_t(language, "too_many", count=max(can_add, 0), name=name, size=size))
        return
    cart = list(state.cart)
    for index, item in enumerate(cart):
        if item.sku == product.sku and item.size == size:
            cart[index] = item.model_copy(update={"quantity": item.quantity + quantity})
            break
    else:
        cart.append(CartItem(sku=product.sku, size=size, quantity=quantity))
    out.state = _advance(state.model_copy(update={"cart": tuple(cart), "pending": None}))
    added = CartItem(sku=product.sku, size=size, quantity=quantity)
    out.parts.append(_t(language, "added", line=_item_line(added, product, language)))


def _advance(state: ConversationState) -> ConversationState:
    """The stage a state with a cart is in: collecting while a detail is missing, else confirming."""
    return state.model_copy(update={"stage": "collecting" if state.missing_detail() else "confirming"})


def _take_detail(out: _Outcome, msg: _Message, detail: Literal["name", "phone", "city"]) -> None:
    """Reads the customer's name, phone or city from the message, or says why it could not."""
    state = out.state
    out.was_value = True
    if detail == "phone":
        update = {"phone": _phone(msg.text)}
    elif detail == "name":
        update = {"customer_name": _free_text(msg.text, _NAME_PREFIXES)}
    else:
        update = {"city": _free_text(msg.text, _CITY_PREFIXES)}
    if None in update.values():
        out.parts.append(_t(state.language, f"bad_{detail}"))
        return
    out.state = _advance(state.model_copy(update=update))


def _place_order(out: _Outcome, catalog: Catalog) -> None:
    """Turns the confirmed cart into an order, empties the cart and thanks the customer."""
    state = out.state
    items = tuple(
        OrderItem(sku=item.sku, size=item.size, quantity=item.quantity, price=catalog.get(item.sku).price)
        for item in state.cart
    )
    assert state.customer_name is not None and state.phone is not None and state.city is not None
    number = state.orders_placed + 1
    total = sum(item.price * item.quantity for item in items)
    out.order = OrderDraft(
        number=number, items=items, customer_name=state.customer_name, phone=state.phone, city=state.city, total=total
    )
    out.state = state.model_copy(update={"cart": (), "pending": None, "stage": "ordered", "orders_placed": number})
    out.parts.append(
        _t(
            state.language,
            "ordered",
            name=state.customer_name,
            number=number,
            total=_money(total, state.language),
            phone=state.phone,
            city=state.city,
        )
    )


def _item_line(item: CartItem, product: Product, language: Language) -> str:
    """One cart line as the customer reads it, with its amount."""
    amount = _money(product.price * item.quantity, language)
    return _t(language, "item_line", name=product.name(language), size=item.size, quantity=item.quantity, amount=amount)


def _catalog_lines(catalog: Catalog, language: Language) -> str:
    """Every product with its price, one per line."""
    return "\n".join(
        _t(language, "catalog_line", name=p.name(language), price=_money(p.price, language)) for p in catalog.products
    )


def _summary(state: ConversationState, catalog: Catalog) -> str:
    """The order as it stands: lines, total, and the customer's details."""
    language = state.language
    lines = "\n".join("• " + _item_line(item, catalog.get(item.sku), language) for item in state.cart)
    total = sum(catalog.get(item.sku).price * item.quantity for item in state.cart)
    return _t(
        language,
        "summary",
        lines=lines,
        total=_money(total, language),
        name=state.customer_name,
        phone=state.phone,
        city=state.city,
    )


def summary_of(state: ConversationState) -> str:
    """A short English account of the conversation's state, for the summarisation step."""
    cart = ", ".join(f"{item.quantity} × {item.sku} ({item.size})" for item in state.cart) or "empty"
    details = [
        f"name {state.customer_name}" if state.customer_name else "no name",
        f"phone {state.phone}" if state.phone else "no phone",
        f"city {state.city}" if state.city else "no city",
    ]
    parts = [f"Language: {state.language}.", f"Stage: {state.stage}.", f"Cart: {cart}."]
    if state.pending is not None:
        parts.append(f"Waiting for the size of {state.pending.quantity} × {state.pending.sku}.")
    parts.append(f"Customer: {', '.join(details)}.")
    parts.append(f"Orders placed: {state.orders_placed}.")
    return " ".join(parts)
