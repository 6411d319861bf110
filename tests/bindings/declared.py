"""What cffi_build declares, read back from the generated ffi: enum constants and function names."""

from cudnn_denoise.bindings import ffi


def enum_constants() -> dict[str, int]:
    """Every declared enum constant name -> value."""
    constants = {}
    for name in ffi.list_types()[0]:
        ctype = ffi.typeof(name)
        if ctype.kind == "enum":
            constants.update(ctype.relements)
    return constants


def function_names(lib, prefix: str) -> list[str]:
    """Declared names starting with prefix that are functions (not enum constants)."""
    constants = enum_constants()
    return sorted(n for n in dir(lib) if n.startswith(prefix) and n not in constants)
