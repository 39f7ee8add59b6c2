"""Griffe extensions (mkdocstrings' `extensions:` in mkdocs.yml; tests/test_docs.py loads
them too).

`CommentDocstrings`: the constants' docstrings. jaxdiff documents a module-level constant with
``#:`` comment lines above it (Sphinx's convention), which griffe does not read: this extension
makes those lines the attribute's docstring, so that `SAMPLERS`, `SCHEDULES`, ... render with
their description.

`EquinoxInit`: the signatures of equinox modules. `equinox.Module` subclasses are dataclasses
made by a metaclass, so their `__init__` exists only at run time and griffe's static analysis
sees their fields as plain attributes: the API reference would show `Heun` or `DDIM` without
their constructor's parameters. For each such class without an `__init__` of its own in the
source, this extension adds one built from the runtime class's `inspect.signature`, which
`merge_init_into_class` then shows as the class's signature.
"""

from __future__ import annotations

import inspect

import griffe

_KINDS = {
    inspect.Parameter.POSITIONAL_ONLY: griffe.ParameterKind.positional_only,
    inspect.Parameter.POSITIONAL_OR_KEYWORD: griffe.ParameterKind.positional_or_keyword,
    inspect.Parameter.VAR_POSITIONAL: griffe.ParameterKind.var_positional,
    inspect.Parameter.KEYWORD_ONLY: griffe.ParameterKind.keyword_only,
    inspect.Parameter.VAR_KEYWORD: griffe.ParameterKind.var_keyword,
}


def _annotation(annotation) -> str | None:
    if annotation is inspect.Parameter.empty:
        return None
    return annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)


class CommentDocstrings(griffe.Extension):
    def on_attribute_instance(self, *, attr: griffe.Attribute, **kwargs) -> None:
        if attr.docstring is not None or attr.lineno is None:
            return
        try:
            lines = attr.module.lines  # the whole module's source lines
        except (AttributeError, OSError):
            return
        comments = []
        i = attr.lineno - 2  # the line above the assignment (lineno counts from 1)
        while 0 <= i < len(lines) and lines[i].strip().startswith("#:"):
            comments.insert(0, lines[i].strip()[2:].strip())
            i -= 1
        if comments:
            attr.docstring = griffe.Docstring(
                "\n".join(comments), lineno=i + 2, endlineno=attr.lineno - 1, parent=attr
            )


class EquinoxInit(griffe.Extension):
    def on_class_members(self, *, cls: griffe.Class, **kwargs) -> None:
        if "__init__" in cls.members:
            return
        try:
            import equinox

            runtime = griffe.dynamic_import(cls.path)
        except Exception:  # not importable here: keep what static analysis found
            return
        if not (isinstance(runtime, type) and issubclass(runtime, equinox.Module)):
            return
        try:
            signature = inspect.signature(runtime)
        except (TypeError, ValueError):
            return
        parameters = [griffe.Parameter("self", kind=griffe.ParameterKind.positional_or_keyword)]
        for p in signature.parameters.values():
            parameters.append(
                griffe.Parameter(
                    p.name,
                    annotation=_annotation(p.annotation),
                    kind=_KINDS[p.kind],
                    default=None if p.default is inspect.Parameter.empty else repr(p.default),
                )
            )
        init = griffe.Function("__init__", parameters=griffe.Parameters(*parameters))
        init.labels.add("runtime-signature")
        cls.set_member("__init__", init)
