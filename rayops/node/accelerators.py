"""What accelerator a node has: NVIDIA GPUs' type, read through NVML, as Ray names it.

A node with an NVIDIA GPU advertises ``accelerator_type:<X>`` (a resource of 1) and the label
``ray.io/accelerator-type: <X>``, where ``<X>`` is Ray's name for the model ("A100", "H100",
"V100", "RTX-PRO-6000", ...). NVML comes from the optional ``nvidia-ml-py`` package
(``pip install rayops[gpu]``), imported only when a node starts; without it, without a driver
or without a device, the node has no accelerator type (nothing is guessed).

``accelerator_type_from_name`` is the naming rule, free of I/O; ``detect_accelerator_type``
is the one place that talks to NVML.
"""

from __future__ import annotations

import logging
import re

__all__ = ["accelerator_type_from_name", "detect_accelerator_type"]

logger = logging.getLogger(__name__)

# The vendor word, then the model token: optional all-capital words ("RTX PRO") and a token of
# capitals and digits with at least one digit ("A100" of "A100-SXM4-40GB", "V100" of
# "Tesla V100-SXM2-16GB"). Ray's rule, so names match Ray's accelerator constants.
_MODEL = re.compile(r"\w+\s+((?:[A-Z]+\s+)*[A-Z0-9]*\d[A-Z0-9]*)")


def accelerator_type_from_name(product_name: str | None) -> str | None:
    """Ray's accelerator type for an NVML product name (None for no name).

    "NVIDIA A100-SXM4-40GB" -> "A100", "Tesla V100-SXM2-16GB" -> "V100", "NVIDIA H100 80GB
    HBM3" -> "H100", "NVIDIA RTX PRO 6000 Blackwell ..." -> "RTX-PRO-6000"; a name without such a
    model token (consumer cards: "NVIDIA GeForce RTX 5090") becomes the product name without
    the vendor, dashes for spaces ("GeForce-RTX-5090").
    """
    if not product_name or not product_name.strip():
        return None
    m = _MODEL.match(product_name)
    if m is not None:
        model = m.group(1).replace(" ", "-")
        if len(model) > 1:
            return model
    cleaned = re.sub(r"^NVIDIA\s+", "", product_name.strip()).strip()
    return cleaned.replace(" ", "-") or None


def detect_accelerator_type() -> str | None:
    """The type of this machine's first NVIDIA GPU through NVML; None when there is none.

    None also when ``nvidia-ml-py`` is not installed or NVML cannot start (no driver): a node
    without a GPU has no accelerator type, as in Ray.
    """
    try:
        import pynvml  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception as err:  # NVMLError and its subclasses: no driver or library
        logger.debug("NVML is not available: %r", err)
        return None
    try:
        if pynvml.nvmlDeviceGetCount() < 1:
            return None
        name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0))
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        return accelerator_type_from_name(str(name))
    except Exception as err:
        logger.warning("could not read the GPU's name through NVML: %r", err)
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass
