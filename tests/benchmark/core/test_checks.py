"""Declared field constraints (benchmark.core.checks), shared by the settings tree and the method configs."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import pytest

from benchmark.core.checks import ConfigError, checked, validate
from methods.base import TeacherRequest

if TYPE_CHECKING:
    from collections import OrderedDict  # an annotation that cannot be resolved at run time


@dataclass(frozen=True)
class Declared:
    size: int = checked(1, "positive")
    share: float = checked(0.5, "unit")
    temperatures: tuple[float, ...] = checked((1.0,), "positive")
    mode: str = checked("a", choices=("a", "b"))
    kind: Literal["x", "y"] = "x"

    def __post_init__(self) -> None:
        validate(self, "declared.")


@pytest.mark.parametrize("values, message", [
    ({"size": 0}, "declared.size=0: expected an integer > 0 and <= 2147483647"),
    ({"share": 1.5}, "declared.share=1.5: expected a finite number in [0, 1]"),
    ({"share": float("inf")}, "declared.share=inf: expected a finite number in [0, 1]"),
    ({"temperatures": (1.0, -2.0)}, "declared.temperatures=-2.0: expected a finite number > 0"),
    ({"mode": "c"}, "declared.mode='c': expected one of a, b"),
    ({"kind": "z"}, "declared.kind='z': expected one of x, y"),
])
def test_each_declaration_is_checked_with_a_one_line_error(values, message):
    with pytest.raises(ConfigError) as error:
        Declared(**values)
    assert str(error.value) == message


def test_an_unknown_check_name_fails_where_the_field_is_declared():
    with pytest.raises(ValueError, match="^unknown check 'posative'; expected one of positive, non_negative, "):
        checked(1, "posative")


def test_an_unresolvable_annotation_skips_only_the_literal_choices():
    @dataclass(frozen=True)
    class ThirdParty:
        order: OrderedDict | None = None
        size: int = checked(1, "positive")

        def __post_init__(self) -> None:
            validate(self)

    assert ThirdParty().size == 1
    with pytest.raises(ConfigError, match="^size=0: expected an integer > 0"):
        ThirdParty(size=0)


def test_a_teacher_request_is_checked_as_declared():
    assert TeacherRequest("topk_logits", topk=5, temperatures=(1.0, 2.0)).topk == 5
    with pytest.raises(ConfigError, match="^teacher_request.needs='logits': expected one of none, text, topk_logits, "
                                          "full_logits, hidden_states$"):
        TeacherRequest(**{"needs": "logits"})
    with pytest.raises(ConfigError, match=r"^teacher_request.on_policy_fraction=1.5: expected a finite number in "
                                          r"\[0, 1\]$"):
        TeacherRequest("full_logits", on_policy_fraction=1.5)
