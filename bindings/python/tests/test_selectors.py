from __future__ import annotations

import pytest

import flotta


def test_matches_follow_kubernetes_semantics() -> None:
    selector = flotta.Selector("tier in (edge, gateway), !deprecated, zone != cold")
    assert selector.matches({"tier": "edge"})
    assert selector.matches({"tier": "gateway", "zone": "warm"})
    # != and notin match objects without the key; `!key` refuses the key.
    assert not selector.matches({"tier": "edge", "deprecated": "yes"})
    assert not selector.matches({"tier": "edge", "zone": "cold"})
    assert not selector.matches({"tier": "cloud"})
    assert not selector.matches({})


def test_numeric_comparisons_and_existence() -> None:
    selector = flotta.Selector("cores > 2, gpu")
    assert selector.matches({"cores": "4", "gpu": ""})
    assert not selector.matches({"cores": "2", "gpu": "x"})
    assert not selector.matches({"cores": "4"})
    assert not selector.matches({"cores": "many", "gpu": "x"})


def test_str_is_canonical_sorted_form() -> None:
    selector = flotta.Selector("zone=a,tier in (z,b,a),!old")
    assert str(selector) == "!old,tier in (a,b,z),zone=a"
    assert repr(selector) == 'Selector("!old,tier in (a,b,z),zone=a")'
    assert flotta.Selector(str(selector)) == selector
    assert hash(flotta.Selector("a=1,b=2")) == hash(flotta.Selector("b=2,a=1"))
    assert selector.keys == ["old", "tier", "zone"]


def test_empty_selector_matches_everything() -> None:
    everything = flotta.Selector("")
    assert everything.matches({})
    assert everything.matches({"any": "thing"})
    assert everything == flotta.Selector.everything()
    assert not everything
    assert flotta.Selector("a")


@pytest.mark.parametrize(
    ("text", "offset"),
    [
        ("tier in (edge", 13),
        ("a=b,,c", 4),
        ("tier=" + "x" * 64, 5),
        ("a b", 2),
    ],
)
def test_errors_are_value_errors_with_the_offset(text: str, offset: int) -> None:
    with pytest.raises(flotta.SelectorError) as caught:
        flotta.Selector(text)
    assert isinstance(caught.value, ValueError)
    assert caught.value.offset == offset
    assert f"byte {offset}" in str(caught.value)


def test_labels_must_be_strings() -> None:
    with pytest.raises(TypeError):
        flotta.Selector("a=1").matches({"a": 1})  # type: ignore[dict-item]
