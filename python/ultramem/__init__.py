"""ultramem from Python: the crate's memory-layer ops over its C ABI.

``import ultramem`` loads ``libultramem.so`` (``$ULTRAMEM_LIB``, or the copy shipped in the
package) and, when PyTorch is installed, registers ``torch.ops.ultramem.*`` with autograd and
fake kernels, and :class:`ultramem.nn.UltraMemV2`. ``ultramem.jax`` runs the forward ops on JAX
arrays (eager). Errors raise :class:`UltramemError` with the crate's message.
"""

from ._lib import ABI_VERSION, UltramemError, library_path

__all__ = ["ABI_VERSION", "UltramemError", "library_path", "tucker_proxy"]
__version__ = "0.1.0"

try:
    import torch as _torch  # noqa: F401
except ImportError:  # the ctypes layer and ultramem.jax work without torch
    _torch = None

if _torch is not None:
    from . import torch_ops  # noqa: F401  (registers torch.ops.ultramem.*)
    from .torch_ops import ACTIVATIONS, SCORE_FNS  # noqa: F401
    from .proxy import tucker_proxy  # noqa: F401
