"""The local shop assistant and its catalog: scripted English and Ukrainian conversations, answers, refusals."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from activities.chat.assistant import (
    AssistantTurn,
    CartItem,
    ConversationState,
    OrderDraft,
    OrderItem,
    reply,
    summary_of,
)
from activities.chat.catalog import DEFAULT_CATALOG_PATH, Catalog, catalog_from_json, load_catalog
from conveyor.errors import BadInput, NotFound

CATALOG = load_catalog()


def _talk(messages: Sequence[str], state: ConversationState | None = None) -> list[AssistantTurn]:
    """Every turn of a conversation that sends ``messages`` one after another."""
    turns: list[AssistantTurn] = []
    current = state or ConversationState()
    for text in messages:
        turn = reply(current, text, CATALOG)
        turns.append(turn)
        current = turn.state
    return turns


def _say(state: ConversationState, text: str) -> AssistantTurn:
    """One turn."""
    return reply(state, text, CATALOG)


# --- the catalog ----------------------------------------------------------------------------------------------


def test_sample_catalog_has_eight_products_priced_in_uah_with_names_in_both_languages() -> None:
    raw = json.loads(DEFAULT_CATALOG_PATH.read_text(encoding="utf-8"))
    assert CATALOG.currency == "UAH"
    assert len(CATALOG.products) == len(raw["products"]) == 8
    for product in CATALOG.products:
        assert product.price > 0 and product.name_en and product.name_uk
        assert any(not a.isascii() for a in product.aliases), f"{product.sku} has no Ukrainian alias"
        assert any(a.isascii() for a in product.aliases), f"{product.sku} has no English alias"


def test_catalog_finds_a_product_by_sku_or_any_alias_whatever_the_case_or_inflection() -> None:
    assert CATALOG.find("hoodie-ovs") is CATALOG.find("HOODIE") is CATALOG.find("Худі") is CATALOG.get("HOODIE-OVS")
    for form in ("сукня", "Сукню", "СУКНІ", "dresses"):
        assert CATALOG.find(form) is CATALOG.get("DRESS-KNIT-KIDS"), form
    assert CATALOG.find("sofa") is None
    assert CATALOG.by_sku("nope") is None


def test_catalog_lists_the_products_a_text_mentions_once_each_in_order() -> None:
    mentioned = CATALOG.mentioned_in("Скільки коштує футболка і худі? А ще футболку!")
    assert [product.sku for product in mentioned] == ["TEE-BASIC", "HOODIE-OVS"]
    assert CATALOG.mentioned_in("what hat? that t-shirt") == [CATALOG.get("BEANIE-KNIT"), CATALOG.get("TEE-BASIC")]


def test_in_stock_follows_the_catalog_counts_and_unknown_skus_or_sizes_are_never_in_stock() -> None:
    assert CATALOG.in_stock("HOODIE-OVS", "m")
    assert CATALOG.in_stock("HOODIE-OVS", "S", quantity=3)
    assert not CATALOG.in_stock("HOODIE-OVS", "S", quantity=4)
    assert not CATALOG.in_stock("HOODIE-OVS", "L")
    assert not CATALOG.in_stock("HOODIE-OVS", "XXL")
    assert not CATALOG.in_stock("NO-SUCH", "M")
    assert CATALOG.get("DRESS-KNIT-KIDS").sizes_in_stock() == ["104", "110", "122", "128"]


def test_unknown_sku_is_not_found_with_a_code() -> None:
    with pytest.raises(NotFound) as excinfo:
        CATALOG.get("SOFA-1")
    assert excinfo.value.code == "PRODUCT_NOT_FOUND"


def test_catalog_refuses_an_alias_that_names_two_products_and_negative_stock(tmp_path: Path) -> None:
    product = {"sku": "A-1", "name_en": "A", "name_uk": "А", "aliases": ["top"], "price": 100, "sizes": {"M": 1}}
    clash = {"products": [product, {**product, "sku": "B-2"}]}
    with pytest.raises(BadInput, match="names both") as excinfo:
        catalog_from_json(clash)
    assert excinfo.value.code == "CATALOG_INVALID"
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"products": [{**product, "sizes": {"M": -1}}]}), encoding="utf-8")
    with pytest.raises(BadInput, match="negative"):
        load_catalog(path)
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(BadInput):
        load_catalog(path)
    assert isinstance(catalog_from_json({"products": [product]}), Catalog)


# --- whole conversations ending in an order -------------------------------------------------------------------


def test_english_conversation_collects_an_order_across_messages_and_confirms_it() -> None:
    turns = _talk(
        [
            "Hello!",
            "How much is the hoodie?",
            "I want 2 hoodies size M",
            "and a t-shirt in L please",
            "My name is Olena Petrenko",
            "+380 67 123 45 67",
            "Kyiv",
            "yes",
        ]
    )
    assert turns[1].text == "Oversized hoodie costs 1,290 UAH."
    assert turns[2].text.startswith("Added to your cart: Oversized hoodie, size M × 2 — 2,580 UAH.")
    assert turns[3].text == (
        "Added to your cart: Cotton t-shirt, size L × 1 — 490 UAH.\n\nWhat name should I put on the order?"
    )
    assert turns[4].text == "What is your phone number? (+380XXXXXXXXX or 0XXXXXXXXX)"
    assert turns[5].text == "Which city should we deliver to?"
    assert turns[6].text == (
        "Your order:\n"
        "• Oversized hoodie, size M × 2 — 2,580 UAH\n"
        "• Cotton t-shirt, size L × 1 — 490 UAH\n"
        "Total: 3,070 UAH\n"
        "Name: Olena Petrenko\n"
        "Phone: +380671234567\n"
        "Delivery to: Kyiv\n\n"
        "Shall I place the order? (yes/no)"
    )
    assert [turn.order for turn in turns[:-1]] == [None] * 7
    assert turns[-1].order == OrderDraft(
        number=1,
        items=(
            OrderItem(sku="HOODIE-OVS", size="M", quantity=2, price=1290),
            OrderItem(sku="TEE-BASIC", size="L", quantity=1, price=490),
        ),
        customer_name="Olena Petrenko",
        phone="+380671234567",
        city="Kyiv",
        total=3070,
    )
    assert "order #1 is placed, total 3,070 UAH" in turns[-1].text
    final = turns[-1].state
    assert (final.stage, final.cart, final.orders_placed, final.language) == ("ordered", (), 1, "en")


def test_ukrainian_conversation_gets_ukrainian_replies_and_ends_in_the_same_order_shape() -> None:
    turns = _talk(
        [
            "Привіт!",
            "скільки коштує худі?",
            "хочу 2 худі розмір L",
            "тоді М",
            "Мене звати Олена Петренко",
            "067-123-45-67",
            "м. Київ",
            "так",
        ]
    )
    assert turns[0].text.startswith("Вітаю!")
    assert turns[1].text == "Худі оверсайз коштує 1 290 грн."
    assert turns[2].text == "На жаль, Худі оверсайз у розмірі L немає. В наявності: S, M, XL."
    assert turns[2].state.cart == ()
    assert turns[3].text.startswith("Додав у кошик: Худі оверсайз, розмір M × 2 — 2 580 грн.")
    assert turns[3].text.endswith("Як вас звати? Напишіть ім'я та прізвище для замовлення.")
    assert turns[6].text.startswith("Ваше замовлення:\n• Худі оверсайз, розмір M × 2 — 2 580 грн\nРазом: 2 580 грн")
    assert turns[6].text.endswith("Оформлюю замовлення? (так/ні)")
    assert turns[-1].order == OrderDraft(
        number=1,
        items=(OrderItem(sku="HOODIE-OVS", size="M", quantity=2, price=1290),),
        customer_name="Олена Петренко",
        phone="+380671234567",
        city="Київ",
        total=2580,
    )
    assert turns[-1].text.startswith("Дякуємо, Олена Петренко! Замовлення №1 оформлено, разом 2 580 грн.")
    assert all(turn.state.language == "uk" for turn in turns)


def test_a_returning_customer_goes_straight_to_confirmation_and_gets_order_number_two() -> None:
    first = _talk(["I want a dress size 122", "Olena", "0671234567", "Lviv", "yes"])[-1]
    again = _talk(["I want 3 beanies size 52", "yes"], first.state)
    assert again[0].text.startswith("Added to your cart: Knitted beanie, size 52 × 3 — 1,170 UAH.\n\nYour order:")
    assert again[1].order is not None
    assert (again[1].order.number, again[1].order.total, again[1].order.city) == (2, 1170, "Lviv")
    assert again[1].state.orders_placed == 2


# --- answers from the catalog ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("how much is the jacket?", "Quilted jacket costs 2,490 UAH."),
        ("What's the price of the beanie", "Knitted beanie costs 390 UAH."),
        ("скільки коштує куртка?", "Стьобана куртка коштує 2 490 грн."),
        ("Яка ціна на піжаму?", "Дитяча фланелева піжама коштує 750 грн."),
    ],
)
def test_price_questions_are_answered_with_the_catalog_price(question: str, answer: str) -> None:
    assert _say(ConversationState(), question).text == answer


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("what sizes does the dress come in?", "Girls' knit dress — sizes in stock: 104, 110, 122, 128."),
        ("які розміри є на сукню?", "Трикотажна сукня для дівчинки — розміри в наявності: 104, 110, 122, 128."),
        ("what size is the hoodie?", "Oversized hoodie — sizes in stock: S, M, XL."),
    ],
)
def test_size_questions_list_only_the_sizes_in_stock(question: str, answer: str) -> None:
    assert _say(ConversationState(), question).text == answer


def test_stock_questions_give_counts_or_say_which_sizes_are_available() -> None:
    state = ConversationState()
    assert _say(state, "is the hoodie in stock?").text == "Oversized hoodie in stock: S — 3, M — 5, XL — 2."
    assert _say(state, "do you have the hoodie in M?").text == "Yes, Oversized hoodie in size M is in stock (5 left)."
    assert _say(state, "є худі розміру L?").text == "На жаль, Худі оверсайз у розмірі L немає. В наявності: S, M, XL."
    assert _say(state, "do you have the jacket in XXL?").text == (
        "Quilted jacket does not come in size XXL. In stock: S, L, XL."
    )


def test_catalog_question_lists_every_product_with_its_price() -> None:
    text = _say(ConversationState(), "що у вас є?").text
    assert text.startswith("Ось що у нас є:\n• Худі оверсайз — 1 290 грн\n")
    assert text.count("•") == len(CATALOG.products)


# --- refusals and corrections ---------------------------------------------------------------------------------


def test_an_out_of_stock_size_is_refused_naming_the_sizes_available_and_the_cart_stays_empty() -> None:
    turn = _say(ConversationState(language="en"), "I want 2 hoodies size L")
    assert turn.text == "Sorry, Oversized hoodie in size L is out of stock. Available: S, M, XL."
    assert (turn.state.cart, turn.state.stage) == ((), "browsing")
    follow = _say(turn.state, "M then")
    assert follow.state.cart == (CartItem(sku="HOODIE-OVS", size="M", quantity=2),)


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("I want 0 hoodies size M", "How many would you like? At least one, please."),
        ("I want 21 hoodies size M", "At most 20 of one item per order, please."),
        ("I want 99999999999999999999 hoodies size M", "At most 20 of one item per order, please."),
    ],
)
def test_a_quantity_of_zero_or_over_the_limit_is_refused(text: str, answer: str) -> None:
    turn = _say(ConversationState(), text)
    assert (turn.text, turn.state.cart) == (answer, ())


def test_naming_just_a_product_gives_its_price_and_sizes_in_stock() -> None:
    assert _say(ConversationState(), "hoodie?").text == "Oversized hoodie costs 1,290 UAH; sizes in stock: S, M, XL."
    assert (
        _say(ConversationState(), "куртка").text == "Стьобана куртка коштує 2 490 грн; розміри в наявності: S, L, XL."
    )


def test_more_than_is_left_is_refused_counting_what_is_already_in_the_cart() -> None:
    turns = _talk(["I want 2 hoodies size S", "add 2 more hoodies size S"])
    assert turns[1].text.startswith("Sorry, only 1 of Oversized hoodie in size S can be added.")
    assert turns[1].state.cart == (CartItem(sku="HOODIE-OVS", size="S", quantity=2),)


def test_an_order_without_a_size_asks_for_one_and_the_next_message_can_just_name_it() -> None:
    turns = _talk(["хочу 3 футболки", "S"])
    assert turns[0].text == "Бавовняна футболка: який розмір? В наявності: XS, S, M, L."
    assert turns[1].state.cart == (CartItem(sku="TEE-BASIC", size="S", quantity=3),)


def test_an_invalid_phone_is_asked_for_again_and_a_valid_one_is_stored_in_international_form() -> None:
    turns = _talk(["I want a tee size M", "Taras", "12345", "call me at 0501112233"])
    assert turns[2].text == (
        "Sorry, that does not look like a Ukrainian phone number.\n\n"
        "What is your phone number? (+380XXXXXXXXX or 0XXXXXXXXX)"
    )
    assert turns[2].state.phone is None
    assert turns[3].state.phone == "+380501112233"
    assert turns[3].text == "Which city should we deliver to?"


@pytest.mark.parametrize("bad", ["+0671234567", "380671234", "06712345678", "+44 20 7946 0958"])
def test_phones_that_are_not_ukrainian_numbers_are_refused(bad: str) -> None:
    state = _talk(["I want a tee size M", "Taras"])[-1].state
    assert _say(state, bad).state.phone is None


def test_a_name_that_is_not_a_name_is_asked_for_again() -> None:
    state = _talk(["I want a tee size M"])[-1].state
    turn = _say(state, "no")
    assert turn.state.customer_name is None
    assert turn.text.startswith('Please send just your name in letters, e.g. "Olena Petrenko".')


def test_no_at_confirmation_returns_to_browsing_keeping_the_cart_and_checkout_resumes() -> None:
    turns = _talk(["I want a tee size M", "Taras", "0501112233", "Odesa", "no", "checkout"])
    declined = turns[4]
    assert declined.order is None
    assert declined.state.stage == "browsing"
    assert declined.state.cart == (CartItem(sku="TEE-BASIC", size="M", quantity=1),)
    assert turns[5].state.stage == "confirming"
    assert turns[5].text.endswith("Shall I place the order? (yes/no)")


@pytest.mark.parametrize("word", ["cancel", "Скасувати"])
def test_cancel_empties_the_cart_and_returns_to_browsing_from_any_stage(word: str) -> None:
    for before in (["I want a tee size M"], ["I want a tee size M", "Taras", "0501112233", "Odesa"]):
        turn = _say(_talk(before)[-1].state, word)
        assert (turn.state.stage, turn.state.cart, turn.order) == ("browsing", (), None)
    assert _say(ConversationState(), word).text in (
        "There is nothing to cancel: your cart is empty.",
        "Скасовувати нічого: кошик порожній.",
    )


def test_yes_places_an_order_only_once() -> None:
    turns = _talk(["I want a tee size M", "Taras", "0501112233", "Odesa", "yes", "yes"])
    assert [turn.order is not None for turn in turns] == [False, False, False, False, True, False]


def test_unknown_input_gets_a_fallback_naming_what_the_assistant_can_do_in_the_customers_language() -> None:
    english = _say(ConversationState(), "what is the meaning of life").text
    assert english.startswith("Sorry, I did not understand that. I can tell you prices, sizes and stock")
    assert "Oversized hoodie" in english and "Knitted beanie" in english
    ukrainian = _say(ConversationState(language="en"), "розкажи анекдот").text
    assert ukrainian.startswith("Вибачте, я не зрозумів.")
    assert "Худі оверсайз" in ukrainian


def test_a_name_typed_in_latin_letters_keeps_a_ukrainian_conversation_in_ukrainian() -> None:
    turns = _talk(["хочу футболку M", "Olena Petrenko", "0671234567", "Kyiv"])
    assert turns[-1].state.customer_name == "Olena Petrenko"
    assert turns[-1].state.language == "uk"
    assert turns[-1].text.endswith("Оформлюю замовлення? (так/ні)")


def test_summary_of_states_the_cart_the_customer_and_the_orders_placed() -> None:
    state = _talk(["I want 2 hoodies size M", "Olena", "0671234567"])[-1].state
    assert summary_of(state) == (
        "Language: en. Stage: collecting. Cart: 2 × HOODIE-OVS (M). "
        "Customer: name Olena, phone +380671234567, no city. Orders placed: 0."
    )
    assert summary_of(ConversationState()) == (
        "Language: uk. Stage: browsing. Cart: empty. Customer: no name, no phone, no city. Orders placed: 0."
    )


# --- determinism and robustness -------------------------------------------------------------------------------

SCRIPT = [
    "Привіт!",
    "скільки коштує худі?",
    "хочу 2 худі розмір L",
    "M",
    "what sizes does the dress come in?",
    "Олена",
    "12345",
    "0671234567",
    "Київ",
    "ні",
    "оформити",
    "так",
]


def test_the_same_messages_always_get_the_same_replies_states_and_orders() -> None:
    first = _talk(SCRIPT)
    second = _talk(SCRIPT)
    assert [turn.model_dump() for turn in first] == [turn.model_dump() for turn in second]
    assert first[-1].order is not None


PHRASES = [*SCRIPT, "yes", "no", "cancel", "I want 2 hoodies size M", "0501112233", "Kyiv", "checkout", "S", "🙂"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            st.sampled_from(PHRASES),
            st.text(max_size=60),
            st.just(""),
            st.just(" \n\t "),
            st.just("🛍️" * 100),
            st.just("х" * 4096),
            st.text(alphabet="0123456789+ -()", max_size=30),
        ),
        max_size=12,
    )
)
def test_reply_never_raises_and_always_leaves_a_valid_state(messages: list[str]) -> None:
    state = ConversationState()
    for text in messages:
        turn = reply(state, text, CATALOG)
        assert turn.text.strip()
        assert ConversationState.model_validate(turn.state.model_dump()) == turn.state
        for item in turn.state.cart:
            assert CATALOG.in_stock(item.sku, item.size, item.quantity)
        if turn.order is not None:
            assert state.stage == "confirming"
            assert turn.state.stage == "ordered"
            assert turn.order.number == turn.state.orders_placed
        else:
            assert turn.state.orders_placed == state.orders_placed
        state = turn.state
