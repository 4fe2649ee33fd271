"""Take the JSON string out of a pickled 0-d object array (``_metadata``) without unpickling.

PtychoPINN's writers store ``_metadata`` as ``np.array(json_text, dtype=object)``, which NumPy
saves as a pickle of the whole array. Unpickling would run whatever the stream names, so this
module never calls ``pickle.loads`` and never imports a class: it reads the opcodes with
:func:`pickletools.genops` (a parser; it executes nothing) and interprets a small allow-list of
them symbolically. Only this pattern is accepted::

    PROTO, FRAME, MEMOIZE/PUT/GET            bookkeeping
    numpy.core.multiarray._reconstruct       (or numpy._core.multiarray), as a *name* only
    numpy.ndarray, numpy.dtype               as names only
    ints, bools, None, bytes, str, tuples, lists, MARK
    REDUCE, BUILD                            recorded as symbols, never called

and the result must be an object array of one element that is a unicode string: the
reconstruction ``_reconstruct(ndarray, (0,), b'b')`` with state
``(1, shape, dtype('O8'), is_fortran, [text])``. Anything else (another global such as
``os.system``, another opcode, another structure) raises :class:`UnsafePickle`; the caller
skips the entry with a warning.

:func:`plain_value_from_pickle` reads the same way a pickle of plain data only (dicts, lists,
tuples, strings, bytes, numbers, booleans, None), such as PtychoPINN's ``params.dill`` and
``manifest.dill``: it names no global at all, so nothing could be imported or called even in
principle.
"""

from __future__ import annotations

import io
import pickletools
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

__all__ = ["UnsafePickle", "json_text_from_npy", "plain_value_from_pickle"]

#: The only globals a NumPy object-array pickle may name (never imported or called here).
ALLOWED_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
})

_PUSH_ARGUMENT = frozenset({
    "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8",
    "SHORT_BINBYTES", "BINBYTES", "BINBYTES8",
    "BININT", "BININT1", "BININT2", "BINFLOAT", "LONG1",
})
_CONSTANTS = MappingProxyType({"NONE": None, "NEWTRUE": True, "NEWFALSE": False})
_MAX_BYTES = 1 << 24  # 16 MiB: metadata, not data


class UnsafePickle(ValueError):
    """The pickle stream is not the plain JSON-string object array this reader accepts."""


@dataclass(frozen=True)
class _Global:
    module: str
    name: str


@dataclass(frozen=True)
class _Call:
    func: object
    args: object


@dataclass(frozen=True)
class _Built:
    obj: object
    state: object


def _global(module: str, name: str, allowed=ALLOWED_GLOBALS) -> _Global:
    if (module, name) not in allowed:
        raise UnsafePickle(f"the pickle names {module}.{name}, which is not allowed")
    return _Global(module, name)


def _pop_mark(stack: list, marks: list) -> list:
    if not marks:
        raise UnsafePickle("the pickle pops a MARK that was never set")
    start = marks.pop()
    items = stack[start:]
    del stack[start:]
    return items


def _set_items(stack: list, marks: list) -> None:
    items = _pop_mark(stack, marks)
    if len(items) % 2:
        raise UnsafePickle("SETITEMS with an odd number of items")
    target = stack[-1]
    if not isinstance(target, dict):
        raise UnsafePickle("SETITEMS on something that is not a dict")
    for key, value in zip(items[::2], items[1::2], strict=True):
        target[_hashable(key)] = value


def _hashable(key):
    if isinstance(key, (str, bytes, int, float, bool, type(None))):
        return key
    raise UnsafePickle(f"a dict key of type {type(key).__name__} is not allowed")


def _interpret(data: bytes, allowed_globals=ALLOWED_GLOBALS):
    """Run the allowed opcodes on symbols; return the object the stream would build."""
    stack: list = []
    marks: list = []
    memo: dict = {}
    try:
        for opcode, arg, _position in pickletools.genops(io.BytesIO(data)):
            name = opcode.name
            if name in ("PROTO", "FRAME"):
                continue
            if name in _PUSH_ARGUMENT:
                stack.append(arg)
            elif name in _CONSTANTS:
                stack.append(_CONSTANTS[name])
            elif name == "MEMOIZE":
                memo[len(memo)] = stack[-1]
            elif name in ("BINPUT", "LONG_BINPUT"):
                memo[arg] = stack[-1]
            elif name in ("BINGET", "LONG_BINGET"):
                stack.append(memo[arg])
            elif name == "MARK":
                marks.append(len(stack))
            elif name == "EMPTY_TUPLE":
                stack.append(())
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                count = int(name[-1])
                items = tuple(stack[-count:])
                del stack[-count:]
                stack.append(items)
            elif name == "TUPLE":
                stack.append(tuple(_pop_mark(stack, marks)))
            elif name == "EMPTY_LIST":
                stack.append([])
            elif name == "EMPTY_DICT":
                stack.append({})
            elif name == "SETITEM":
                value, key = stack.pop(), stack.pop()
                if not isinstance(stack[-1], dict):
                    raise UnsafePickle("SETITEM on something that is not a dict")
                stack[-1][_hashable(key)] = value
            elif name == "SETITEMS":
                _set_items(stack, marks)
            elif name == "APPEND":
                value = stack.pop()
                stack[-1].append(value)
            elif name == "APPENDS":
                items = _pop_mark(stack, marks)
                stack[-1].extend(items)
            elif name == "GLOBAL":
                module, _, attribute = str(arg).partition(" ")
                stack.append(_global(module, attribute, allowed_globals))
            elif name == "STACK_GLOBAL":
                attribute, module = stack.pop(), stack.pop()
                if not (isinstance(module, str) and isinstance(attribute, str)):
                    raise UnsafePickle("STACK_GLOBAL without two strings")
                stack.append(_global(module, attribute, allowed_globals))
            elif name == "REDUCE":
                args = stack.pop()
                stack.append(_Call(stack.pop(), args))
            elif name == "BUILD":
                state = stack.pop()
                stack.append(_Built(stack.pop(), state))
            elif name == "STOP":
                if len(stack) != 1 or marks:
                    raise UnsafePickle("the pickle stops with an unbalanced stack")
                return stack[0]
            else:
                raise UnsafePickle(f"opcode {name} is not allowed")
    except (IndexError, KeyError, AttributeError, TypeError) as exc:
        raise UnsafePickle(f"malformed pickle stream ({type(exc).__name__}: {exc})") from exc
    except ValueError as exc:  # genops on a truncated or corrupt stream
        if isinstance(exc, UnsafePickle):
            raise
        raise UnsafePickle(f"unreadable pickle stream ({exc})") from exc
    raise UnsafePickle("the pickle stream has no STOP")


def _is_global(value, name: str) -> bool:
    return isinstance(value, _Global) and value.name == name


def _text_of(result) -> str:
    """The string of a symbolic one-element object array, or :class:`UnsafePickle`."""
    if not isinstance(result, _Built) or not isinstance(result.obj, _Call):
        raise UnsafePickle("not an array reconstruction")
    call = result.obj
    if not _is_global(call.func, "_reconstruct"):
        raise UnsafePickle("not an array reconstruction")
    if not (isinstance(call.args, tuple) and call.args and _is_global(call.args[0], "ndarray")):
        raise UnsafePickle("not an ndarray reconstruction")
    state = result.state
    if not (isinstance(state, tuple) and len(state) == 5):
        raise UnsafePickle("unexpected array state")
    _version, shape, dtype, _fortran, payload = state
    if not (isinstance(dtype, _Built) and isinstance(dtype.obj, _Call) and _is_global(dtype.obj.func, "dtype")):
        raise UnsafePickle("unexpected dtype in the array state")
    if not (isinstance(dtype.obj.args, tuple) and dtype.obj.args and dtype.obj.args[0] == "O8"):
        raise UnsafePickle("not an object array")
    if not (isinstance(shape, tuple) and int(np.prod(shape, dtype=np.int64)) == 1):
        raise UnsafePickle(f"an object array of shape {shape}, expected a single element")
    if not (isinstance(payload, list) and len(payload) == 1 and isinstance(payload[0], str)):
        raise UnsafePickle("the array's element is not a unicode string")
    return payload[0]


def json_text_from_npy(data: bytes) -> str:
    """The unicode string held by a ``.npy`` file of a one-element object array.

    Parameters
    ----------
    data : bytes
        The ``.npy`` file (an NPZ member), header and pickle stream.

    Returns
    -------
    str
        The string; decoding it (JSON) is the caller's business.

    Raises
    ------
    UnsafePickle
        The header is not an object array, or the stream is anything but the accepted
        pattern (module docstring). Nothing in ``data`` is ever executed or imported.
    """
    if len(data) > _MAX_BYTES:
        raise UnsafePickle(f"{len(data)} bytes is too large for metadata")
    handle = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, _fortran, dtype = np.lib.format.read_array_header_1_0(handle)
        elif version == (2, 0):
            shape, _fortran, dtype = np.lib.format.read_array_header_2_0(handle)
        else:
            raise ValueError(f".npy format version {version} is not read here")
    except ValueError as exc:
        raise UnsafePickle(f"not a .npy file ({exc})") from exc
    if dtype != np.dtype(object):
        raise UnsafePickle(f"a .npy array of dtype {dtype}, not an object array")
    if int(np.prod(shape, dtype=np.int64)) != 1:
        raise UnsafePickle(f"an object array of shape {shape}, expected a single element")
    return _text_of(_interpret(handle.read()))


def _check_plain(value, path: str = "value") -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _check_plain(item, f"{path}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_plain(item, f"{path}[{index}]")
    elif not isinstance(value, (str, bytes, int, float, bool, type(None))):
        raise UnsafePickle(f"{path} is not plain data ({type(value).__name__})")


def plain_value_from_pickle(data: bytes):
    """The plain data (dict, list, tuple, str, bytes, int, float, bool, None) a pickle builds.

    Parameters
    ----------
    data : bytes
        A pickle stream (protocol 2 to 5) that names no global, e.g. PtychoPINN's
        ``params.dill`` or ``manifest.dill`` (dill writes plain dicts as standard pickles).

    Returns
    -------
    object
        The value, rebuilt from the opcodes; nothing is imported or called.

    Raises
    ------
    UnsafePickle
        The stream names a global, uses another opcode, is truncated, or builds anything but
        plain data.
    """
    if len(data) > _MAX_BYTES:
        raise UnsafePickle(f"{len(data)} bytes is too large for a settings pickle")
    value = _interpret(data, allowed_globals=frozenset())
    _check_plain(value)
    return value
