"""The C ABI of ultramem (``include/ultramem.h``) through ctypes.

Tensors cross as DLPack: each argument's ``DLManagedTensor`` (from ``torch.utils.dlpack`` or an
array's ``__dlpack__``) starts with its ``DLTensor``, so the capsule's pointer *is* the
``DLTensor*`` the ABI takes. Nothing is copied; the capsule is kept alive for the call.
"""

import ctypes
import os
import pathlib

__all__ = ["UltramemError", "lib", "library_path", "check", "STATUS_NAMES"]

STATUS_NAMES = {
    1: "shape",
    2: "invalid argument",
    3: "index out of range",
    4: "non-finite",
    5: "unsupported",
    6: "backend",
    7: "internal",
    8: "out of memory",
}


class UltramemError(RuntimeError):
    """A failed ultramem call: ``status`` is the ABI's code, the message is the crate's."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.kind = STATUS_NAMES.get(status, "unknown")


def library_path():
    """``$ULTRAMEM_LIB``, else ``libultramem.so`` shipped inside this package."""
    env = os.environ.get("ULTRAMEM_LIB")
    if env:
        return env
    shipped = pathlib.Path(__file__).with_name("libultramem.so")
    if shipped.exists():
        return str(shipped)
    raise OSError(
        "libultramem.so not found: build it with `cargo build --release` and set "
        "ULTRAMEM_LIB=<repo>/target/release/libultramem.so, or copy it into python/ultramem/ "
        "before `pip install ./python`"
    )


lib = ctypes.CDLL(library_path())

_T = ctypes.c_void_p  # const DLTensor*
_I32, _I64, _U64 = ctypes.c_int32, ctypes.c_int64, ctypes.c_uint64
_SIGNATURES = {
    "ultramem_weighted_gather_forward": [_T, _T, _T, _T, _T],
    "ultramem_weighted_gather_backward": [_T, _T, _T, _T, _T, _T, _T],
    "ultramem_peer_ffn_forward": [_T, _T, _T, _T, _T, _I32, _T, _T],
    "ultramem_peer_ffn_backward": [_T, _T, _T, _T, _T, _I32, _T, _T, _T, _T, _T, _T],
    "ultramem_additive_topk_forward": [_T, _T, _I64, _I64, _T, _T, _T],
    "ultramem_additive_topk_backward": [_T, _T, _T, _T, _T, _T, _T],
    "ultramem_tucker_topk_forward": [_T, _T, _T, _T, _T, _I64, _I64, _T, _T, _T],
    "ultramem_tucker_topk_backward": [_T, _T, _T, _T, _T, _T, _T, _T, _T, _T, _T],
    "ultramem_tucker_proxy": [_T, _T, _T, _T, _T],
    "ultramem_index_map_forward": [_T, _T, _U64, _U64, _U64, _T, _T],
    "ultramem_score_fn_forward": [_T, _I32, _T, _T],
    "ultramem_score_fn_backward": [_T, _I32, _T, _T, _T],
}
for _name, _args in _SIGNATURES.items():
    _f = getattr(lib, _name)
    _f.argtypes = _args
    _f.restype = _I32
lib.ultramem_last_error.argtypes = []
lib.ultramem_last_error.restype = ctypes.c_char_p
lib.ultramem_abi_version.argtypes = []
lib.ultramem_abi_version.restype = _I32

ABI_VERSION = 3
if lib.ultramem_abi_version() != ABI_VERSION:
    raise OSError(
        f"{library_path()} implements ultramem ABI {lib.ultramem_abi_version()}, "
        f"this package needs {ABI_VERSION}"
    )

_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def dltensor(capsule):
    """The ``DLTensor*`` inside a legacy ``"dltensor"`` capsule (its first member)."""
    return _capsule_pointer(capsule, b"dltensor")


def check(status):
    """Raises :class:`UltramemError` with the crate's message unless ``status`` is 0."""
    if status:
        raise UltramemError(status, lib.ultramem_last_error().decode("utf-8", "replace"))
