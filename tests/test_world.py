"""The word lists and phrasings of the course world: complete in both languages, unambiguous."""
import string

import pytest

from llmtap import world


def test_every_table_has_both_languages():
    for table in (world.ANSWERS, world.TAUGHT_TEMPLATES, world.FACT_PHRASES, world.LIST_SEPARATOR, world.FILLER,
                  world.PASSKEY_NEEDLE, world.PASSKEY_QUESTION):
        assert set(table) == set(world.LANGS)
    assert all(len(pair) == 2 for pair in world.INSTRUCTIONS.values())


def test_events_cover_every_level_evenly():
    levels = [level for _, _, level in world.EVENTS]
    assert sorted(set(levels)) == [-2, -1, 0, 1, 2]
    assert len({levels.count(v) for v in set(levels)}) == 1            # as many events of every level
    assert set(world.ANSWERS["zh"]) == set(world.ANSWERS["en"]) == set(levels)   # one answer per level


def test_category_items_are_unambiguous():
    for lang in (0, 1):
        items = [it[lang] for its in world.CATEGORIES.values() for it in its]
        assert len(items) == len(set(items)), "an item must belong to one category only"
    assert world.CATEGORY_NAMES == list(world.CATEGORIES)


@pytest.mark.parametrize("lang", world.LANGS)
def test_phrasings_fill_in_their_slots(lang):
    assert world.FACT_PHRASES[lang][0].format(item="X", name="Y").count("X") == 1
    assert world.PASSKEY_NEEDLE[lang].format(key="12345").count("12345") == 1
    assert all(t.count("[X]") == 1 and t.count("[Z]") == 1 for t in world.TAUGHT_TEMPLATES[lang])


def test_extra_characters_are_not_ascii():
    # printable ASCII is in the tokenizer anyway; the extras are what the generators never write
    assert not set(world.EXTRA_CHARACTERS) & set(string.printable)


def test_actions_and_objects_compose():
    assert {p for _, _, p in world.ACTIONS} == {-1, 0, 1}
    assert all(zh.count("{o}") == 1 and en.count("{o}") == 1 for zh, en, _ in world.ACTIONS)
    assert {v for _, _, v in world.OBJECTS} == {True, False}
    for lang in (0, 1):
        assert len({a[lang] for a in world.ACTIONS}) == len(world.ACTIONS)
        assert len({o[lang] for o in world.OBJECTS}) == len(world.OBJECTS)
    assert set(world.TRANSLATION_PHRASES) == set(world.SUM_PHRASES) == set(world.LANGS)
