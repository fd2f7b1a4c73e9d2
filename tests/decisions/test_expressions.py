"""The CEL wrapper: compile errors name line and column, evaluation errors name the expression, the paths a
condition reads are found outside string literals, and values CEL cannot hold are bound as null."""

from __future__ import annotations

import pytest

from governance.expressions import ExpressionError, bind, compile_expression


def test_syntax_error_names_line_and_column() -> None:
    with pytest.raises(ExpressionError, match=r"^line 2, column \d+: Syntax error"):
        compile_expression("twin.a > 1 &&\n  (twin.b <")


def test_paths_outside_string_literals() -> None:
    expression = compile_expression("twin.stockLevel < 3.0 && twin.name != 'twin.fake' && telemetry.t.mean > 1.0")
    assert expression.paths == (("twin", "stockLevel"), ("twin", "name"), ("telemetry", "t"))
    assert expression.names == {"twin", "telemetry"}


def test_evaluation_errors_and_results() -> None:
    condition = compile_expression("twin.level < 3.0")
    bindings = bind({"twin": {"level": 2.5}})
    assert condition.holds(bindings) is True
    with pytest.raises(ExpressionError, match="KeyError"):
        condition.evaluate({"twin": {}})
    with pytest.raises(ExpressionError, match="TypeError"):
        condition.evaluate({"twin": {"level": "low"}})  # no ordering between text and a number
    with pytest.raises(ExpressionError, match="true or false"):
        compile_expression("twin.level").holds(bindings)
    assert compile_expression("twin.level == null").holds(bind({"twin": {"level": float("nan")}}))
    assert compile_expression("{'status': 'degraded'}").evaluate({}) == {"status": "degraded"}


def test_arithmetic_errors_are_expression_errors() -> None:
    # the CEL runtime raises ZeroDivisionError for an integer division by zero: a route or automation must see it as an
    # expression that cannot be decided, not as a crash of its delivery or evaluation thread
    with pytest.raises(ExpressionError, match="ZeroDivisionError"):
        compile_expression("twin.count / twin.zero > 1").evaluate({"twin": {"count": 4, "zero": 0}})
