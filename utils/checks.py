"""Checking a value against its declared type, and suggesting the valid name a typo meant: the config's fields,
TRL's arguments and command-line values are all checked with these."""

import dataclasses
import difflib
import types
import typing


def closest(value, valid) -> str | None:
    """The valid name a typo most likely meant: one it begins (``adamw`` -> ``adamw_torch``), else the most similar."""
    text, valid = str(value), [str(v) for v in valid]
    starts = [v for v in valid if v.startswith(text) or text.lower() == v.lower()]
    return starts[0] if starts else next(iter(difflib.get_close_matches(text, valid, n=1, cutoff=0.5)), None)


def choose(value, valid) -> str:
    """'choose one of ...', with the closest valid name when there is one."""
    close = closest(value, valid)
    return f"choose one of {', '.join(map(str, valid))}" + (f" (did you mean {close!r}?)" if close else "")


def annotation_arms(annotation) -> tuple:
    """The types a value may have: ``int | None`` -> (int, NoneType)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def has_type(annotation, value) -> bool:
    """Whether ``value`` has the declared type (bools are not numbers, ints are floats; types it does not know
    pass: TRL's own fields are checked with it too)."""
    for arm in annotation_arms(annotation):
        origin = typing.get_origin(arm) or arm
        if arm is typing.Any or (arm is type(None) and value is None):
            return True
        if origin is typing.Literal:
            if value in typing.get_args(arm):
                return True
        elif not isinstance(origin, type):
            return True
        elif arm is int or arm is float:
            if isinstance(value, (int, float) if arm is float else int) and not isinstance(value, bool):
                return True
        elif isinstance(value, (list, tuple) if origin in (list, tuple) else origin):
            return True
    return False


def describe_type(annotation) -> str:
    names = {bool: "True or False", int: "a whole number", float: "a number", str: "a string", dict: "a dict"}
    arms = [names.get(arm, "None" if arm is type(None) else getattr(arm, "__name__", str(arm)))
            for arm in annotation_arms(annotation)]
    return " or ".join(dict.fromkeys(arms))


def type_problem(f: dataclasses.Field, value) -> str | None:
    """A value of the wrong type for its field, with the fix (a number written as a string: without quotes)."""
    if has_type(f.type, value):
        return None
    fix = f"use {describe_type(f.type)}"
    if f.type is dict or dict in annotation_arms(f.type):
        fix += " (a JSON object on the command line), e.g. {'epsilon': 0.3}"
    numeric = any(arm in (int, float) for arm in annotation_arms(f.type))
    if isinstance(value, str) and numeric and _is_number(value):
        fix += f" (write it without quotes: {value.strip()})"
    return f"{f.name}={value!r}: {fix}"


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False
