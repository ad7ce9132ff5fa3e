"""The messages between the grader and the student's process: data only, never code.

A message is a JSON header and raw byte buffers. Values travel as a flat table of
nodes, each naming its children by position, so that deep structures (a chain of
100_000 ``Value`` nodes) need no recursion and shared objects stay shared::

    frame   = 8-byte length | 4-byte header length | JSON header | buffers
    header  = {"kind": ..., "nodes": [...], "root": i, "buffers": [sizes], ...}

Reading a message (``decode``) builds only plain data: None, bool, int, float,
str, tuple, list, dict, ``torch.Size`` and base ``torch.Tensor`` (from a dtype,
a shape and a raw buffer). Nothing is unpickled and no class named in a
message is instantiated, so a message cannot run code in the reader. What the
reader does not hold itself comes as a reference: an ``Opaque`` handle for an
object that stays in the student's process (a cache, a generator), or an object
the reader sent earlier (``Codec`` keeps both sides' tables).

The student's process (``side="student"``) also rebuilds the grader's own objects
(a graph of ``Value`` nodes, a ``torch.Generator``, a function to call back), so
the grader's item code runs unchanged; only the grader's messages are read that
way, never the student's.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

_FRAME = struct.Struct("!QI")
# A message larger than this is refused (the student's process is memory-limited anyway).
MAX_MESSAGE = 1 << 31

_DTYPES = {
    str(dt).removeprefix("torch."): dt
    for dt in (
        torch.float64,
        torch.float32,
        torch.float16,
        torch.bfloat16,
        torch.int64,
        torch.int32,
        torch.int16,
        torch.int8,
        torch.uint8,
        torch.bool,
        torch.complex64,
        torch.complex128,
    )
}


class Malformed(Exception):
    """A message that does not follow the format (sent by a misbehaving student process)."""


@dataclass(frozen=True)
class Opaque:
    """An object that stays in the student's process; the grader holds only this handle.

    ``type_name`` is the qualified name of its type ("numpy.ndarray", "MyCache"),
    ``module`` the type's module, ``length`` its len() if it has one, ``note`` why
    it could not travel as data (e.g. "a tensor subclass"), when that matters.
    """

    token: str
    type_name: str
    module: str = ""
    length: int | None = None
    note: str = ""

    def __repr__(self) -> str:
        return f"<{self.type_name} in the student's process>"


class Callback:
    """Stands, in the student's process, for a function of the grader (e.g. f of a
    finite difference): calling it asks the grader to run it on the given arguments."""

    def __init__(self, token: str, name: str, call: Callable[[str, tuple, dict], Any]) -> None:
        self._token, self.__name__, self._call = token, name, call
        self.__qualname__ = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self._token, args, kwargs)

    def __repr__(self) -> str:
        return f"<function {self.__name__}>"


# ----------------------------------------------------------------------------- framing
def write_frame(fd: int, header: dict, buffers: list[bytes | memoryview]) -> None:
    """Write one message to the file descriptor ``fd``."""
    header = dict(header, buffers=[len(b) for b in buffers])
    head = json.dumps(header, separators=(",", ":")).encode()
    total = 4 + len(head) + sum(len(b) for b in buffers)
    parts = [_FRAME.pack(total, len(head)), head, *buffers]
    for part in parts:
        view = memoryview(part).cast("B")
        while view:
            written = os.write(fd, view)
            view = view[written:]


class FrameReader:
    """Splits a byte stream into messages (header dict, list of buffers)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def feed(self, chunk: bytes) -> None:
        self.data += chunk

    def next(self) -> tuple[dict, list[memoryview]] | None:
        """The next complete message, or None; raises Malformed on a broken one."""
        if len(self.data) < _FRAME.size:
            return None
        total, head_size = _FRAME.unpack_from(self.data)
        if total > MAX_MESSAGE or head_size > total - 4 + 4:
            raise Malformed(f"a message of {total} bytes")
        if len(self.data) < 8 + total:
            return None
        raw = bytes(self.data[8 : 8 + total])
        del self.data[: 8 + total]
        try:
            header = json.loads(raw[4 : 4 + head_size].decode())
        except (ValueError, UnicodeDecodeError, RecursionError) as err:
            raise Malformed(f"an unreadable header ({type(err).__name__})") from None
        if not isinstance(header, dict) or not isinstance(header.get("buffers"), list):
            raise Malformed("a header that is not a dict with buffer sizes")
        buffers, offset = [], 4 + head_size
        for size in header["buffers"]:
            if not isinstance(size, int) or size < 0 or offset + size > len(raw):
                raise Malformed("buffer sizes that do not add up")
            buffers.append(memoryview(raw)[offset : offset + size])
            offset += size
        return header, buffers


# ----------------------------------------------------------------------------- values
class Codec:
    """Turns values into messages and back, for one side of one grading session.

    Objects that both sides know get a token: the grader's objects sent to the
    student ("g1", "g2", ...) and the student's objects handed to the grader
    ("s1", ...). A token keeps identity across calls: the same generator passed
    twice is the same generator in the student's process, and a cache returned by
    a forward pass is the very object its backward receives.
    """

    def __init__(self, side: str, callback: Callable[[str, tuple, dict], Any] | None = None):
        if side not in ("grader", "student"):
            raise ValueError(f"side must be 'grader' or 'student', got {side!r}")
        self.side = side
        self.prefix = "g" if side == "grader" else "s"
        self.count = 0
        self.by_id: dict[int, str] = {}  # id(object) -> token, for objects with a token
        self.objects: dict[str, Any] = {}  # token -> object (this side's copy)
        self.callback = callback  # student side: how a Callback reaches the grader
        self.value_index: dict[int, tuple[str, int]] = {}  # id(Value) -> (graph token, index)

    def _token_for(self, obj: Any) -> str | None:
        return self.by_id.get(id(obj))

    def _new_token(self, obj: Any) -> str:
        self.count += 1
        token = f"{self.prefix}{self.count}"
        self.remember(token, obj)
        return token

    def remember(self, token: str, obj: Any) -> None:
        self.by_id[id(obj)] = token
        self.objects[token] = obj

    def forget(self, token: str) -> None:
        """Drop an object from the tables (e.g. a tensor replaced by a new one)."""
        obj = self.objects.pop(token, None)
        if obj is not None and self.by_id.get(id(obj)) == token:
            del self.by_id[id(obj)]

    # ------------------------------------------------------------------ encoding
    def encode(self, value: Any) -> tuple[list, int, list[bytes]]:
        """(nodes, root index, buffers) for ``value``; iterative, shares repeated objects."""
        nodes: list = []
        buffers: list[bytes] = []
        index: dict[int, int] = {}
        keep: list[Any] = []  # objects encoded in this message stay alive, so ids stay unique
        pending: list[tuple[int, Any]] = []

        def slot(obj: Any) -> int:
            key = id(obj)
            if key in index:
                return index[key]
            keep.append(obj)
            nodes.append(None)
            index[key] = len(nodes) - 1
            pending.append((len(nodes) - 1, obj))
            return len(nodes) - 1

        root = slot(value)
        while pending:
            position, obj = pending.pop()
            nodes[position] = self._node(obj, slot, buffers)
        return nodes, root, buffers

    def _node(self, obj: Any, slot: Callable[[Any], int], buffers: list[bytes]) -> list:
        if obj is None:
            return ["none"]
        if isinstance(obj, bool):
            return ["bool", obj]
        if isinstance(obj, int):
            return ["int", int(obj)]
        if isinstance(obj, float):
            return ["float", float(obj) if math.isfinite(obj) else repr(float(obj))]
        if isinstance(obj, str):
            return ["str", str(obj)]
        if isinstance(obj, torch.Tensor):
            return self._tensor_node(obj, buffers)
        if isinstance(obj, torch.Size):
            return ["size", [int(n) for n in obj]]
        if isinstance(obj, tuple):
            return ["tuple", [slot(v) for v in tuple.__iter__(obj)]]
        if isinstance(obj, list) and (type(obj) is list or self.side == "student"):
            token = self._token_for(obj) or self._new_token(obj)
            items = list(list.__iter__(obj))
            if self.side == "student" and len(items) > 8:
                graph = self._value_refs(items)
                if graph is not None:
                    buffers.append(torch.tensor(graph[1], dtype=torch.int64).numpy().tobytes())
                    return ["vlist", graph[0], len(buffers) - 1, token]
            return ["list", [slot(v) for v in items], token]
        if isinstance(obj, dict) and (type(obj) is dict or self.side == "student"):
            items = list(dict.items(obj))
            if all(type(k) is str for k, _ in items):
                token = self._token_for(obj) or self._new_token(obj)
                return ["dict", [[k, slot(v)] for k, v in items], token]
        if isinstance(obj, Opaque):  # the grader hands back what the student gave it
            return ["ref", obj.token]
        known = self._token_for(obj)
        if isinstance(obj, torch.Generator) and known is not None and self.side == "student":
            buffers.append(obj.get_state().numpy().tobytes())  # its state, as the call left it
            return ["generator", known, len(buffers) - 1, obj.device.type]
        if self.side == "grader":
            return self._grader_object(obj, known, slot, buffers)
        if known is not None:  # an object the grader sent: it gets its own object back
            return ["ref", known]
        if id(obj) in self.value_index:
            token, position = self.value_index[id(obj)]
            return ["vref", token, position]
        return self._opaque(obj)

    def _value_refs(self, items: list) -> tuple[str, list[int]] | None:
        """(graph token, positions) if every item is a node of one graph the grader sent."""
        places = [self.value_index.get(id(v)) for v in items]
        if not places or any(p is None for p in places):
            return None
        tokens = {p[0] for p in places}
        if len(tokens) != 1:
            return None
        return places[0][0], [p[1] for p in places]

    def _tensor_node(self, t: torch.Tensor, buffers: list[bytes]) -> list:
        token = self._token_for(t) or self._new_token(t)
        if self.side == "student":
            problem = tensor_problem(t)
            if problem:
                return ["opaque", token, _type_name(t), type(t).__module__, None, problem]
        data = t.detach()
        if data.layout != torch.strided or data.device.type != "cpu":
            return ["opaque", token, _type_name(t), "torch", None, "not a dense CPU tensor"]
        name = str(data.dtype).removeprefix("torch.")
        if name not in _DTYPES:
            return ["opaque", token, _type_name(t), "torch", None, f"dtype {data.dtype}"]
        data = (
            torch.Tensor._make_subclass(torch.Tensor, data)
            if type(data) is not torch.Tensor
            else data
        )
        flat = data.contiguous().reshape(-1)
        raw = flat.view(torch.uint8) if flat.numel() and flat.element_size() else flat
        buffers.append(raw.numpy().tobytes() if flat.numel() else b"")
        return ["tensor", name, list(data.shape), len(buffers) - 1, token]

    def _grader_object(self, obj: Any, known: str | None, slot, buffers) -> list:
        value_cls = _value_class()
        if value_cls is not None and type(obj) is value_cls:
            return self._value_graph(obj, buffers)
        if isinstance(obj, torch.Generator):
            token = known or self._new_token(obj)
            buffers.append(obj.get_state().numpy().tobytes())
            return ["generator", token, len(buffers) - 1, obj.device.type]
        if callable(obj) and not hasattr(obj, "__dict__") or _is_function(obj):
            token = known or self._new_token(obj)
            target = _importable(obj)
            return ["function", token, getattr(obj, "__name__", "function"), target]
        state = _state(obj)
        if state is None:
            raise TypeError(f"the grader cannot send a {type(obj).__name__} to the student")
        token = known or self._new_token(obj)
        cls = type(obj)
        return ["object", token, cls.__module__, cls.__qualname__, [[k, slot(v)] for k, v in state]]

    def _value_graph(self, root: Any, buffers: list[bytes]) -> list:
        """A graph of coursekit.scalar.Value nodes, as arrays (fast for 100_000 nodes)."""
        order, index, stack = [], {}, [root]
        while stack:
            node = stack.pop()
            if id(node) in index:
                continue
            index[id(node)] = len(order)
            order.append(node)
            stack.extend(node._prev)
        token = self._new_token(order)
        self.value_index.update((id(v), (token, i)) for i, v in enumerate(order))
        counts = [len(v._prev) for v in order]
        flat = [index[id(c)] for v in order for c in v._prev]
        arrays = [
            torch.tensor([float(v.data) for v in order], dtype=torch.float64),
            torch.tensor([float(v.grad) for v in order], dtype=torch.float64),
            torch.tensor(counts, dtype=torch.int64),
            torch.tensor(flat, dtype=torch.int64),
        ]
        first = len(buffers)
        buffers.extend(a.numpy().tobytes() for a in arrays)
        ops = [str(v._op) for v in order]
        labels = [str(v.label) for v in order]
        return ["values", token, 0, len(order), ops, labels, first]

    def _opaque(self, obj: Any) -> list:
        token = self._new_token(obj)
        try:
            length = len(obj) if hasattr(type(obj), "__len__") else None
            length = int(length) if isinstance(length, int) else None
        except Exception:
            length = None
        return ["opaque", token, _type_name(obj), type(obj).__module__, length, ""]

    # ------------------------------------------------------------------ decoding
    def decode(self, nodes: Any, root: Any, buffers: list[memoryview]) -> Any:
        """The value a message describes; raises Malformed on anything unexpected.

        Three passes, none recursive: every node that is not a tuple is created (containers
        and objects empty), then tuples are built children first, then containers and
        objects are filled.
        """
        if not isinstance(nodes, list) or type(root) is not int or not 0 <= root < len(nodes):
            raise Malformed("no value in the message")
        built: list[Any] = [None] * len(nodes)
        fill: list[int] = []
        tuples: list[int] = []
        for position, node in enumerate(nodes):
            if not isinstance(node, list) or not node or not isinstance(node[0], str):
                raise Malformed("a value node that is not a list")
            if node[0] in ("list", "dict", "object"):
                fill.append(position)
            if node[0] == "tuple":
                _check_children(node[1] if len(node) > 1 else None, len(nodes))
                tuples.append(position)
                continue
            built[position] = self._build(node, buffers, len(nodes))
        state = dict.fromkeys(tuples, 0)  # 0 not built, 1 in progress, 2 built
        for start in tuples:
            stack = [start]
            while stack:
                position = stack[-1]
                if state[position] == 2:
                    stack.pop()
                    continue
                waiting = [c for c in nodes[position][1] if state.get(c, 2) != 2]
                if not waiting:
                    built[position] = tuple(built[c] for c in nodes[position][1])
                    state[position] = 2
                    stack.pop()
                    continue
                if state[position] == 1 or any(state[c] == 1 for c in waiting):
                    raise Malformed("a tuple that contains itself")
                state[position] = 1
                stack.extend(waiting)
        for position in fill:
            node, obj = nodes[position], built[position]
            if node[0] == "list":
                obj.extend(built[c] for c in node[1])
            elif node[0] == "dict":
                for key, child in node[1]:
                    obj[key] = built[child]
            elif obj is not None:  # an object of the grader's, rebuilt in the student's process
                for name, child in node[4]:
                    try:
                        setattr(obj, name, built[child])
                    except (AttributeError, TypeError) as err:
                        raise Malformed(f"cannot set {name!r}: {err}") from None
        return built[root]

    def _build(self, node: list, buffers: list[memoryview], count: int) -> Any:
        kind, args = node[0], node[1:]
        try:
            if kind == "none":
                return None
            if kind == "bool" and isinstance(args[0], bool):
                return args[0]
            if kind == "int" and type(args[0]) is int:
                return args[0]
            if kind == "float":
                value = args[0]
                if isinstance(value, str) and value in ("nan", "inf", "-inf"):
                    return float(value)
                if type(value) in (int, float):
                    return float(value)
            if kind == "str" and isinstance(args[0], str):
                return args[0]
            if kind == "size" and all(type(n) is int and n >= 0 for n in args[0]):
                return torch.Size(args[0])
            if kind == "tensor":
                return self._tensor(args, buffers)
            if kind == "list":
                _check_children(args[0], count)
                return self._container(list, args[1] if len(args) > 1 else None)
            if kind == "dict":
                if not isinstance(args[0], list) or not all(
                    isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in args[0]
                ):
                    raise Malformed("a dict node with malformed items")
                _check_children([v for _, v in args[0]], count)
                return self._container(dict, args[1] if len(args) > 1 else None)
            if kind == "ref":
                return self._ref(args[0])
            if kind == "opaque" and self.side == "grader":
                token, type_name, module, length, note = args[:5]
                if not all(isinstance(s, str) for s in (token, type_name, module, note)):
                    raise Malformed("an opaque handle with malformed fields")
                if length is not None and type(length) is not int:
                    raise Malformed("an opaque handle with a malformed length")
                return Opaque(token, type_name[:200], module[:200], length, note[:200])
            if kind == "generator":
                return self._generator(args, buffers)
            if kind in ("vref", "vlist") and self.side == "grader":
                return self._value_refs_decode(kind, args, buffers)
            if kind == "values" and self.side == "student":
                return self._values_decode(args, buffers)
            if self.side == "student":
                return self._student_build(kind, args, count)
        except (IndexError, TypeError, ValueError, KeyError, RuntimeError) as err:
            raise Malformed(f"a malformed {kind!r} node ({type(err).__name__})") from None
        raise Malformed(f"an unexpected {kind!r} node")

    def _container(self, kind: type, token: Any) -> Any:
        """A list or dict to fill: the same object as before when the token is known."""
        if token is None:
            return kind()
        if not isinstance(token, str):
            raise Malformed("a malformed token")
        obj = self.objects.get(token)
        if isinstance(obj, kind) and type(obj) in (list, dict):
            obj.clear()  # its current contents follow
            return obj
        fresh = kind()
        self.remember(token, fresh)
        return fresh

    def _value_refs_decode(self, kind: str, args: list, buffers: list[memoryview]) -> Any:
        nodes = self.objects.get(args[0])
        if not isinstance(nodes, list) or not all(type(v) is _value_class() for v in nodes[:1]):
            raise Malformed("a reference to an unknown graph")
        if kind == "vref":
            position = args[1]
            if type(position) is not int or not 0 <= position < len(nodes):
                raise Malformed("a reference to an unknown node")
            return nodes[position]
        buffer_index = args[1]
        if type(buffer_index) is not int or not 0 <= buffer_index < len(buffers):
            raise Malformed("a node list without its data")
        raw = buffers[buffer_index]
        if len(raw) % 8:
            raise Malformed("a node list with a partial entry")
        positions = (
            torch.frombuffer(bytearray(raw), dtype=torch.int64)
            if len(raw)
            else torch.zeros(0, dtype=torch.int64)
        )
        if positions.numel() and (int(positions.min()) < 0 or int(positions.max()) >= len(nodes)):
            raise Malformed("a reference to an unknown node")
        result = [nodes[i] for i in positions.tolist()]
        token = args[2] if len(args) > 2 else None
        if isinstance(token, str):
            self.remember(token, result)
        return result

    def _values_decode(self, args: list, buffers: list[memoryview]) -> Any:
        value_cls = _value_class()
        token, root, count, ops, labels, first = args[:6]
        arrays = [bytearray(buffers[first + k]) for k in range(4)]
        data = torch.frombuffer(arrays[0], dtype=torch.float64).tolist() if count else []
        grads = torch.frombuffer(arrays[1], dtype=torch.float64).tolist() if count else []
        counts = torch.frombuffer(arrays[2], dtype=torch.int64).tolist() if count else []
        flat = torch.frombuffer(arrays[3], dtype=torch.int64).tolist() if arrays[3] else []
        from coursekit.scalar import _no_backward

        nodes = [value_cls.__new__(value_cls) for _ in range(count)]
        start = 0
        for i, v in enumerate(nodes):
            v.data, v.grad, v._op, v.label = data[i], grads[i], ops[i], labels[i]
            v._prev = tuple(nodes[j] for j in flat[start : start + counts[i]])
            v._backward = _no_backward
            start += counts[i]
        self.remember(token, nodes)
        self.value_index.update((id(v), (token, i)) for i, v in enumerate(nodes))
        return nodes[root]

    def _generator(self, args: list, buffers: list[memoryview]) -> torch.Generator:
        token, buffer_index = args[0], args[1]
        if type(buffer_index) is not int or not 0 <= buffer_index < len(buffers):
            raise Malformed("a generator without its state")
        generator = self.objects.get(token)
        if not isinstance(generator, torch.Generator):
            if self.side == "grader":
                raise Malformed("a generator the grader did not send")
            generator = torch.Generator()
            self.remember(token, generator)
        state = torch.frombuffer(bytearray(buffers[buffer_index]), dtype=torch.uint8)
        if not torch.equal(state, generator.get_state()):
            generator.set_state(state)
        return generator

    def _tensor(self, args: list, buffers: list[memoryview]) -> torch.Tensor:
        name, shape, buffer_index = args[0], args[1], args[2]
        token = args[3] if len(args) > 3 else None
        if name not in _DTYPES or not isinstance(shape, list):
            raise Malformed(f"a tensor with dtype {name!r}")
        if not all(type(n) is int and n >= 0 for n in shape) or len(shape) > 32:
            raise Malformed("a tensor with a malformed shape")
        if type(buffer_index) is not int or not 0 <= buffer_index < len(buffers):
            raise Malformed("a tensor without its data")
        dtype = _DTYPES[name]
        numel = math.prod(shape)
        size = numel * torch.empty((), dtype=dtype).element_size()
        raw = buffers[buffer_index]
        if len(raw) != size:
            raise Malformed(f"a tensor of shape {tuple(shape)} with {len(raw)} bytes of data")
        if numel:
            flat = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(dtype)
            value = flat.reshape(shape)
        else:
            value = torch.empty(shape, dtype=dtype)
        if token is None:
            return value
        if not isinstance(token, str):
            raise Malformed("a malformed token")
        known = self.objects.get(token)
        if isinstance(known, torch.Tensor):
            return self._update_tensor(token, known, value)
        self.remember(token, value)
        return value

    def _update_tensor(self, token: str, mine: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """A tensor both sides know: keep this side's object, give it the current contents."""
        same = mine.shape == value.shape and mine.dtype == value.dtype
        if same and bool(torch.equal(mine.detach(), value)):
            return mine
        try:
            with torch.no_grad():
                if same:
                    mine.copy_(value)
                else:
                    mine.data = value
            return mine
        except RuntimeError:  # e.g. an expanded view cannot be written to: a new tensor, then
            self.forget(token)
            self.remember(token, value)
            return value

    def _ref(self, token: Any) -> Any:
        if not isinstance(token, str) or token not in self.objects:
            raise Malformed(f"a reference to an unknown object {token!r}")
        return self.objects[token]

    # ------------------------------------------------------------------ student side only
    def _student_build(self, kind: str, args: list, count: int) -> Any:
        if kind == "function":
            token, name, target = args[0], args[1], args[2]
            known = self.objects.get(token)
            if known is not None:
                return known
            fn = _import_target(target) if target else None
            if fn is None:
                fn = Callback(token, str(name), self.callback or _no_callback)
            self.remember(token, fn)
            return fn
        if kind == "object":
            token, module, qualname, attributes = args[0], args[1], args[2], args[3]
            _check_children([c for _, c in attributes], count)
            obj = self.objects.get(token)
            if obj is None:
                cls = _import_target([module, qualname])
                if not isinstance(cls, type):
                    raise Malformed(f"no class {module}.{qualname}")
                obj = cls.__new__(cls)
                self.remember(token, obj)
            return obj
        raise Malformed(f"an unexpected {kind!r} node")


def _check_children(children: Any, count: int) -> None:
    if not isinstance(children, list) or not all(
        type(c) is int and 0 <= c < count for c in children
    ):
        raise Malformed("a container whose children are not node numbers")


def tensor_problem(t: torch.Tensor) -> str:
    """Why a tensor returned by the student cannot be graded as it is ("" if it can)."""
    if type(t) not in (torch.Tensor, torch.nn.Parameter):
        return f"a tensor subclass ({_type_name(t)})"
    if t.layout != torch.strided:
        return f"a {t.layout} tensor"
    if t.device.type != "cpu":
        return f"on device {t.device}"
    return ""


def _type_name(obj: Any) -> str:
    cls = type(obj)
    module = cls.__module__
    if module in ("builtins", "__main__"):
        return cls.__qualname__
    return f"{module}.{cls.__qualname__}"


def _value_class() -> Any:
    """coursekit.scalar.Value, if it is imported (it travels as arrays)."""
    import sys

    module = sys.modules.get("coursekit.scalar")
    return getattr(module, "Value", None)


def _is_function(obj: Any) -> bool:
    import types

    return isinstance(
        obj, (types.FunctionType, types.BuiltinFunctionType, types.MethodType, type(len))
    )


def _importable(fn: Any) -> list[str] | None:
    """[module, qualname] when the student's process can import the very same function."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if not module or "<" in qualname:
        return None
    try:
        found = _import_target([module, qualname])
    except Exception:
        return None
    return [module, qualname] if found is fn else None


def _import_target(target: Any) -> Any:
    if not (
        isinstance(target, list) and len(target) == 2 and all(isinstance(s, str) for s in target)
    ):
        return None
    module, qualname = target
    try:
        obj = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except Exception:
        return None
    return obj


def _state(obj: Any) -> list[tuple[str, Any]] | None:
    """The attributes of a plain object (``__dict__`` and ``__slots__``), or None."""
    names: list[str] = []
    for cls in type(obj).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        names += [slots] if isinstance(slots, str) else list(slots)
    state = [
        (n, getattr(obj, n))
        for n in names
        if n not in ("__dict__", "__weakref__") and hasattr(obj, n)
    ]
    if hasattr(obj, "__dict__"):
        state += list(vars(obj).items())
    if not state and not hasattr(obj, "__dict__"):
        return None
    return state


def _no_callback(token: str, args: tuple, kwargs: dict) -> Any:
    raise RuntimeError("this function of the grader cannot be called here")
