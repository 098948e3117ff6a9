import pytest

from benchmark.core.registry import Registry, RegistryError


def test_decorator_registration_aliases_and_description():
    registry: Registry[type] = Registry("thing")

    @registry.register("alpha", aliases=("a",))
    class Alpha:
        """First line.

        More text."""

    assert registry.get("alpha") is Alpha
    assert registry.get("a") is Alpha
    assert registry.canonical("a") == "alpha"
    assert registry.description("a") == "First line."
    assert registry.names() == ["alpha"]
    assert "a" in registry and "b" not in registry


def test_duplicate_name_or_alias_is_an_error():
    registry: Registry[int] = Registry("thing")
    registry.add("alpha", 1, aliases=("a",))
    with pytest.raises(RegistryError, match="'alpha' is already registered"):
        registry.add("alpha", 2)
    with pytest.raises(RegistryError, match="'a' is already registered"):
        registry.add("beta", 2, aliases=("a",))


def test_unknown_name_lists_registered_and_suggests_closest():
    registry: Registry[int] = Registry("method")
    registry.add("mlot", 1)
    registry.add("uld", 2)
    with pytest.raises(RegistryError) as info:
        registry.get("mlto")
    message = str(info.value)
    assert "unknown method 'mlto'" in message
    assert "registered: mlot, uld" in message
    assert "did you mean 'mlot'?" in message


def test_resolve_expands_all_keeps_order_and_drops_repeats():
    registry: Registry[int] = Registry("task")
    for i, name in enumerate(["qed", "squad", "dialogsum"]):
        registry.add(name, i, aliases=(name[:2],))
    assert registry.resolve(["squad", "qe", "squad"]) == ["squad", "qed"]
    assert registry.resolve(["all"]) == ["qed", "squad", "dialogsum"]


def test_lazy_target_is_imported_on_first_use():
    registry: Registry[object] = Registry("thing")
    registry.add("dumps", "json:dumps")
    import json

    assert registry.get("dumps") is json.dumps
    assert registry.description("dumps").startswith("Serialize")
