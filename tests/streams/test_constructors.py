"""The dataclasses whose ``__init__`` is written out (issue 21: mypyc compiles a written
``__init__``, about 20 times faster than the one ``dataclass`` generates, and the hot path
builds about 18 of these objects per event) take the same arguments as the generated one
would, and set each field from its own argument. Run on either build."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import pkgutil
from typing import Any

import pytest

import enrichers
from enrichers.enrich import Status
from streams import build

_SHELL_MODULES = ("streams.state.store", "streams.worker.batch", "streams.worker.records")


def _written_out() -> list[type[Any]]:
    names = [f"enrichers.{m.name}" for m in pkgutil.iter_modules(enrichers.__path__)]
    found = []
    for name in [*names, *_SHELL_MODULES]:
        module = importlib.import_module(name)
        for value in vars(module).values():
            params = getattr(value, "__dataclass_params__", None)
            if isinstance(value, type) and value.__module__ == name and params is not None:
                found.extend([value] if not params.init else [])
    return found


WRITTEN_OUT = _written_out()


def test_the_hot_classes_are_written_out() -> None:
    names = {cls.__name__ for cls in WRITTEN_OUT}
    assert {"DeviceState", "RawEvent", "Identity", "EventOutcome", "OutRecord"} <= names


def _source(cls: type[Any]) -> ast.ClassDef:
    """The class as written (the compiled build keeps neither annotations nor signatures
    whole)."""
    path = build.ROOT / (cls.__module__.replace(".", "/") + ".py")
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ClassDef) and node.name == cls.__name__:
            return node
    raise AssertionError(f"{cls.__qualname__} not found in {path}")


def _annotations(cls: type[Any]) -> dict[str, str]:
    return {
        node.target.id: ast.unparse(node.annotation)
        for node in _source(cls).body
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
    }


@pytest.mark.parametrize("cls", WRITTEN_OUT, ids=lambda cls: cls.__qualname__)
def test_arguments_are_the_fields_in_order_with_their_defaults(cls: type[Any]) -> None:
    init = next(
        node
        for node in _source(cls).body
        if isinstance(node, ast.FunctionDef) and node.name == "__init__"
    )
    arguments = init.args.args[1:]
    assert not init.args.kwonlyargs and init.args.vararg is None and init.args.kwarg is None
    fields = _arguments(cls)
    assert [a.arg for a in arguments] == [f.name for f in fields]
    annotations = _annotations(cls)
    defaults = [None] * (len(arguments) - len(init.args.defaults)) + list(init.args.defaults)
    namespace = vars(importlib.import_module(cls.__module__))
    for argument, default, field in zip(arguments, defaults, fields, strict=True):
        assert argument.annotation is not None
        assert ast.unparse(argument.annotation) == annotations[field.name], field.name
        if field.default is not dataclasses.MISSING:
            assert default is not None, field.name
            assert eval(ast.unparse(default), namespace) == field.default, field.name
        elif field.default_factory is not dataclasses.MISSING:
            assert default is not None, field.name
            assert eval(ast.unparse(default), namespace) == field.default_factory(), field.name
        else:
            assert default is None, field.name


@pytest.mark.parametrize("cls", WRITTEN_OUT, ids=lambda cls: cls.__qualname__)
def test_each_field_is_set_from_its_own_argument_and_stays_frozen(cls: type[Any]) -> None:
    # distinct values of each field's own kind, so that a swapped assignment shows (and the
    # compiled build's type checks on attributes accept them)
    values = _samples(cls, 0)
    made = cls(**values)
    for name, value in values.items():
        assert getattr(made, name) == value, name
    assert dataclasses.replace(made) == made
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(made, dataclasses.fields(cls)[0].name, values[dataclasses.fields(cls)[0].name])


def _arguments(cls: type[Any]) -> list[dataclasses.Field[Any]]:
    """The fields given to ``__init__`` (not those it derives from them, ``init=False``)."""
    return [f for f in dataclasses.fields(cls) if f.init]


def _samples(cls: type[Any], n: int) -> dict[str, object]:
    annotations = _annotations(cls)
    return {f.name: _sample(annotations[f.name], n + i) for i, f in enumerate(_arguments(cls))}


def _sample(text: str, n: int) -> object:
    for kind, value in (
        ("dict[", {f"k{n}": n}),
        ("Mapping[", {f"k{n}": n}),
        ("tuple[tuple[", ((f"t{n}", f"{n}".encode()),)),
        ("tuple[int", (n, n + 1)),
        ("tuple[str", (f"s{n}",)),
        ("bytes", f"b{n}".encode()),
        ("bool", n % 2 == 1),
        ("int", 1000 + n),
    ):
        if text.startswith(kind):
            return value
    if text.startswith("str") or "Literal" in text or text == "AnonymousIdSource":
        return f"s{n}"
    return _instance_of(text, n)


def _instance_of(text: str, n: int) -> object:
    """A value of one of the project's own classes named in an annotation."""
    name = text.split(" |")[0].strip()
    if name == "Status":
        return list(Status)[n % len(Status)]
    for cls in WRITTEN_OUT:
        if cls.__name__ == name:
            return cls(**_samples(cls, n + 100))
    if text.endswith("| None"):
        return None
    raise AssertionError(f"no sample for {text}")
