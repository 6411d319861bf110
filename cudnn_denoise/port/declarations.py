"""The C API that cudnn_denoise declares (cffi_build/), read with pycparser into Fortran terms.

The declarations are build.declarations(), the text cffi parses. A type this module has no rule
for raises an error naming the declaration rather than guessing. port/fortran_source.py writes the
Fortran interfaces from what this returns; port/trace.py names a call's arguments with it.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

from pycparser import c_ast, c_generator, c_parser

ROOT = Path(__file__).resolve().parents[2]  # the checkout: cffi_build/ and fortran/ beside the package

# C base type -> Fortran type. Enums are integer(c_int); handles (pointers to opaque structs) are
# type(c_ptr); structs with members become bind(C) types of the same name.
_BASIC = {
    "int": "integer(c_int)",
    "unsigned int": "integer(c_int)",  # flags (cudaStreamWaitEvent): small, same size and passing
    "size_t": "integer(c_size_t)",
    "int64_t": "integer(c_int64_t)",
    "unsigned long long": "integer(c_long_long)",  # flags (cudaGraphInstantiate): Fortran has no unsigned
    "float": "real(c_float)",
    "double": "real(c_double)",
    "char": "character(kind=c_char)",
}
# Pointers to these are addresses passed by value as type(c_ptr): device data (void *x, float *y)
# and host scalars whose type or location the call decides (alpha and beta, cublas results).
_ADDRESS_TARGETS = ("void", "float")
# pycparser needs size_t and int64_t declared: on the first line, so that line numbers stay the headers'.
_PRELUDE = "typedef unsigned long size_t; typedef long int64_t; "


# ---- what the declarations say, in Fortran terms ----


PASSING = {"value": ", value", "in": ", intent(in)", "out": ", intent(out)", "member": ""}


@dataclass(frozen=True)
class Variable:
    """One dummy argument or struct member: `{decl} :: {name}{dims}`, commented with its C text."""

    name: str
    type: str  # the Fortran type, e.g. "integer(c_int)"
    passing: str  # a key of PASSING: by value, read (const), written through, or a struct member
    dims: str  # "" or "(*)" or "(3)"
    c_text: str

    @property
    def decl(self) -> str:
        """Type and attributes, e.g. "integer(c_int), intent(out)"."""
        return self.type + PASSING[self.passing]


@dataclass(frozen=True)
class Enum:
    name: str
    values: tuple[tuple[str, int], ...]
    line: int


@dataclass(frozen=True)
class Struct:
    name: str
    members: tuple[Variable, ...]
    line: int


@dataclass(frozen=True)
class Function:
    name: str
    args: tuple[Variable, ...]
    result: str | None  # Fortran type of the result; None for a void function (a subroutine)
    result_c: str
    line: int


@dataclass(frozen=True)
class Declarations:
    enums: tuple[Enum, ...]
    structs: tuple[Struct, ...]
    functions: tuple[Function, ...]
    sections: tuple[tuple[int, str], ...]  # (first line, title), in order


def load_build_module():
    """cffi_build/build.py of this checkout, which owns the headers and their order."""
    path = ROOT / "cffi_build" / "build.py"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: generating Fortran needs a source checkout")
    spec = importlib.util.spec_from_file_location("cffi_build_build", path)
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    return build


def read_declarations() -> Declarations:
    """Parse build.declarations(); sections are its `/* ---- title ---- */` banners and headers."""
    build = load_build_module()
    text = build.declarations()
    headers = [(name, (build.HERE / name).read_text()) for name in build.HEADERS]
    if "\n".join(body for _, body in headers) != text:
        raise ValueError("build.declarations() is no longer the headers joined by newlines: "
                         "update read_declarations")
    sections, line = [], 1
    for name, body in headers:
        sections.append((line, name))
        line += body.count("\n") + 1
    for match in re.finditer(r"/\*\s*----\s*(.*?)\s*----\s*\*/", text):
        sections.append((text.count("\n", 0, match.start()) + 1, match.group(1)))
    return parse(text, tuple(sorted(sections)))


def parse(text: str, sections: tuple[tuple[int, str], ...] = ()) -> Declarations:
    """The enums, structs and functions of C declarations without preprocessor directives."""
    no_comments = re.sub(r"/\*.*?\*/|//[^\n]*", lambda m: "\n" * m.group().count("\n"), text,
                         flags=re.S)
    ast = c_parser.CParser().parse(_PRELUDE + no_comments)
    types = _TypeTable()
    enums, structs, functions = [], [], []
    for node in ast.ext:
        if isinstance(node, c_ast.Typedef):
            declared = types.add(node)
            if isinstance(declared, Enum):
                enums.append(declared)
            elif isinstance(declared, Struct):
                structs.append(declared)
        elif isinstance(node, c_ast.Decl) and isinstance(node.type, c_ast.FuncDecl):
            functions.append(types.function(node))
        else:
            raise ValueError(f"line {node.coord.line}: no rule for {_c_text(node)!r}")
    return Declarations(tuple(enums), tuple(structs), tuple(functions), sections)


class _TypeTable:
    """The typedefs seen so far, and the Fortran rules for types built from them."""

    def __init__(self):
        self.enums: set[str] = set()
        self.handles: set[str] = set()
        self.structs: set[str] = set()

    def add(self, node: c_ast.Typedef) -> Enum | Struct | None:
        inner = node.type.type
        if node.name in ("size_t", "int64_t"):  # the prelude's
            return None
        if isinstance(node.type, c_ast.TypeDecl) and isinstance(inner, c_ast.Enum):
            self.enums.add(node.name)
            values = tuple(_enumerator(e, node.name) for e in inner.values.enumerators)
            return Enum(node.name, values, node.coord.line)
        if (isinstance(node.type, c_ast.PtrDecl) and isinstance(inner, c_ast.TypeDecl)
                and isinstance(inner.type, c_ast.Struct) and inner.type.decls is None):
            self.handles.add(node.name)  # typedef struct cudnnContext *cudnnHandle_t;
            return None
        if (isinstance(node.type, c_ast.PtrDecl) and isinstance(inner, c_ast.TypeDecl)
                and _is_void(inner)):
            self.handles.add(node.name)  # typedef void *cudnnBackendDescriptor_t;
            return None
        if (isinstance(node.type, c_ast.TypeDecl) and isinstance(inner, c_ast.Struct)
                and inner.decls):
            members = tuple(self.member(d) for d in inner.decls)
            self.structs.add(node.name)
            return Struct(node.name, members, node.coord.line)
        raise ValueError(f"line {node.coord.line}: no rule for typedef {_c_text(node)!r}")

    def fortran_type(self, node: c_ast.TypeDecl) -> str:
        name = " ".join(node.type.names) if isinstance(node.type, c_ast.IdentifierType) else None
        if name in _BASIC:
            return _BASIC[name]
        if name in self.enums:
            return "integer(c_int)"
        if name in self.handles:
            return "type(c_ptr)"
        if name in self.structs:
            return f"type({name})"
        raise ValueError(f"line {node.coord.line}: no Fortran type for {_c_text(node)!r}")

    def member(self, decl: c_ast.Decl) -> Variable:
        node = decl.type
        if isinstance(node, c_ast.TypeDecl):
            return Variable(decl.name, self.fortran_type(node), "member", "", _c_text(decl))
        if isinstance(node, c_ast.ArrayDecl) and isinstance(node.dim, c_ast.Constant):
            dims = f"({int(node.dim.value, 0)})"  # int reserved[3];
            return Variable(decl.name, self.fortran_type(node.type), "member", dims, _c_text(decl))
        raise ValueError(f"line {decl.coord.line}: no rule for member {_c_text(decl)!r}")

    def function(self, decl: c_ast.Decl) -> Function:
        func = decl.type
        plist = func.args.params if func.args else []
        if len(plist) == 1 and isinstance(plist[0], c_ast.Typename) and _is_void(plist[0].type):
            plist = []  # f(void)
        args = tuple(self.argument(p, decl.name) for p in plist)
        returned = func.type
        if isinstance(returned, c_ast.PtrDecl):
            result = "type(c_ptr)"  # const char *: fortran_string(result) copies the text
        elif _is_void(returned):
            result = None
        else:
            result = self.fortran_type(returned)
        prototype = _c_text(decl)  # const char *cudnnGetErrorString(cudnnStatus_t status)
        result_c = prototype[: prototype.index(decl.name)].strip()
        return Function(decl.name, args, result, result_c, decl.coord.line)

    def argument(self, param, function: str) -> Variable:
        where = f"line {param.coord.line}, {function}"
        if not isinstance(param, c_ast.Decl) or not param.name:
            raise ValueError(f"{where}: every argument needs a name in Fortran")
        node, c_text = param.type, _c_text(param)
        if isinstance(node, c_ast.TypeDecl):  # a scalar passed by value
            return Variable(param.name, self.fortran_type(node), "value", "", c_text)
        if isinstance(node, c_ast.ArrayDecl) and node.dim is None:  # const int dimA[]
            return Variable(param.name, self.fortran_type(node.type), _intent(node.type), "(*)", c_text)
        if isinstance(node, c_ast.PtrDecl) and _is_void_pointer(node.type):  # void **devPtr
            return Variable(param.name, "type(c_ptr)", "out", "", c_text)
        if isinstance(node, c_ast.PtrDecl) and isinstance(node.type, c_ast.TypeDecl):
            target = node.type
            names = target.type.names if isinstance(target.type, c_ast.IdentifierType) else []
            if names and names[-1] in _ADDRESS_TARGETS:
                return Variable(param.name, "type(c_ptr)", "value", "", c_text)
            ftype, passing = self.fortran_type(target), _intent(target)
            if names == ["char"] or " ".join(names) in self.structs:
                return Variable(param.name, ftype, passing, "(*)", c_text)  # char *message, perfResults
            return Variable(param.name, ftype, passing, "", c_text)  # int *n, cudnnHandle_t *handle
        raise ValueError(f"{where}: no rule for argument {c_text!r}")


def _enumerator(node: c_ast.Enumerator, enum: str) -> tuple[str, int]:
    value = node.value
    sign = 1
    if isinstance(value, c_ast.UnaryOp) and value.op == "-":
        sign, value = -1, value.expr
    if not isinstance(value, c_ast.Constant):
        raise ValueError(f"line {node.coord.line}: {enum}.{node.name} needs an explicit value")
    return node.name, sign * int(value.value.rstrip("uUlL"), 0)


def _intent(node: c_ast.TypeDecl) -> str:
    return "in" if "const" in node.quals else "out"


def _is_void_pointer(node) -> bool:
    return isinstance(node, c_ast.PtrDecl) and _is_void(node.type)


def _is_void(node) -> bool:
    return (isinstance(node, c_ast.TypeDecl) and isinstance(node.type, c_ast.IdentifierType)
            and node.type.names == ["void"])


def _c_text(node) -> str:
    return " ".join(c_generator.CGenerator().visit(node).split())
